-- A service-account key may expire before its account (a kubeconfig for automation with a TTL).
ALTER TABLE service_account_keys ADD COLUMN expires_at timestamptz;
