-- Tenants record their plan by name; the plans themselves (their limits) are configuration.
-- Existing tenants (the single-tenant installation's default tenant) keep no limits.
ALTER TABLE tenants ADD COLUMN plan text NOT NULL DEFAULT 'unlimited' CHECK (plan <> '');
