//! Rolling Talos OS and Kubernetes upgrades, without I/O: the rules that accept or refuse a target
//! version ([`check_talos_upgrade`], [`check_kubernetes_upgrade`]) and the planner that turns the
//! intent and the observed nodes into the next steps ([`next`]) or the whole plan ([`plan`]).
//!
//! The caller (the reconciler) persists each node's [`NodeProgress`], runs the steps [`next`]
//! starts, and calls [`next`] again whenever something changes; the planner never starts a node
//! whose progress is [`NodeProgress::Done`], which is what makes a restarted droverd safe.

mod plan;
mod rules;

pub use plan::{
    Decision, Intent, Node, NodeProgress, Plan, PlannedStep, SetPolicy, Step, next, plan,
    progress_after,
};
pub use rules::{UpgradeRefused, check_kubernetes_upgrade, check_talos_upgrade};

use std::fmt;

/// What an upgrade changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Talos OS: installer image, reboot.
    Talos,
    /// Kubernetes: control-plane components and kubelets, through the machine config.
    Kubernetes,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Talos => "talos",
            Self::Kubernetes => "kubernetes",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Talos => "Talos",
            Self::Kubernetes => "Kubernetes",
        })
    }
}
