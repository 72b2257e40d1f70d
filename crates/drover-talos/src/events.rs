//! The events a Talos node publishes to `events.EventSinkService/Publish`.
//!
//! Each `EventRequest.data` is a `google.protobuf.Any` whose `type_url` is
//! `type.googleapis.com/machine.<Message>`. [`decode`] turns the ones droverd acts on into a
//! [`NodeEvent`]; everything else becomes [`NodeEvent::Other`] (acknowledge and move on).
//! The `encode_*` helpers build the same `Any`s, for the emulator.

use prost::Message;
use prost_types::Any;

use crate::proto::common;
use crate::proto::events::EventRequest;
use crate::proto::machine::machine_status_event::machine_status::UnmetCondition;
use crate::proto::machine::machine_status_event::{MachineStage, MachineStatus};
use crate::proto::machine::sequence_event::Action;
use crate::proto::machine::{MachineStatusEvent, SequenceEvent};

/// Prefix of every Talos event `type_url`.
pub const TYPE_URL_PREFIX: &str = "type.googleapis.com/";
/// Full protobuf name of [`MachineStatusEvent`].
pub const MACHINE_STATUS_EVENT: &str = "machine.MachineStatusEvent";
/// Full protobuf name of [`SequenceEvent`].
pub const SEQUENCE_EVENT: &str = "machine.SequenceEvent";

/// A decoded node event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// `machine.MachineStatusEvent`: the machine's stage and readiness.
    MachineStatus {
        stage: Stage,
        ready: bool,
        /// Unmet readiness conditions as `(name, reason)`.
        unmet: Vec<(String, String)>,
    },
    /// `machine.SequenceEvent`: a boot/install/upgrade/... sequence started or stopped.
    Sequence {
        /// Sequence name, e.g. `boot`, `install`, `upgrade`.
        sequence: String,
        action: SequenceAction,
        /// The sequence's error, when it failed.
        error: Option<String>,
    },
    /// Any other event (PhaseEvent, TaskEvent, ServiceStateEvent, ...), left undecoded.
    Other { type_url: String },
}

/// `MachineStatusEvent.MachineStage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Unknown,
    Booting,
    Installing,
    Maintenance,
    Running,
    Rebooting,
    ShuttingDown,
    Resetting,
    Upgrading,
}

impl Stage {
    /// Every stage, in wire order.
    pub const ALL: [Stage; 9] = [
        Stage::Unknown,
        Stage::Booting,
        Stage::Installing,
        Stage::Maintenance,
        Stage::Running,
        Stage::Rebooting,
        Stage::ShuttingDown,
        Stage::Resetting,
        Stage::Upgrading,
    ];

    /// Lower-case name: `unknown`, `booting`, `installing`, `maintenance`, `running`,
    /// `rebooting`, `shutting_down`, `resetting`, `upgrading`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Unknown => "unknown",
            Stage::Booting => "booting",
            Stage::Installing => "installing",
            Stage::Maintenance => "maintenance",
            Stage::Running => "running",
            Stage::Rebooting => "rebooting",
            Stage::ShuttingDown => "shutting_down",
            Stage::Resetting => "resetting",
            Stage::Upgrading => "upgrading",
        }
    }

    /// The inverse of [`Stage::as_str`].
    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|stage| stage.as_str() == s)
    }

    /// From the wire value; values this build does not know are `Unknown`.
    pub fn from_proto(value: i32) -> Stage {
        match MachineStage::try_from(value).unwrap_or(MachineStage::Unknown) {
            MachineStage::Unknown => Stage::Unknown,
            MachineStage::Booting => Stage::Booting,
            MachineStage::Installing => Stage::Installing,
            MachineStage::Maintenance => Stage::Maintenance,
            MachineStage::Running => Stage::Running,
            MachineStage::Rebooting => Stage::Rebooting,
            MachineStage::ShuttingDown => Stage::ShuttingDown,
            MachineStage::Resetting => Stage::Resetting,
            MachineStage::Upgrading => Stage::Upgrading,
        }
    }

    /// The wire enum.
    pub fn to_proto(self) -> MachineStage {
        match self {
            Stage::Unknown => MachineStage::Unknown,
            Stage::Booting => MachineStage::Booting,
            Stage::Installing => MachineStage::Installing,
            Stage::Maintenance => MachineStage::Maintenance,
            Stage::Running => MachineStage::Running,
            Stage::Rebooting => MachineStage::Rebooting,
            Stage::ShuttingDown => MachineStage::ShuttingDown,
            Stage::Resetting => MachineStage::Resetting,
            Stage::Upgrading => MachineStage::Upgrading,
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `SequenceEvent.Action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SequenceAction {
    Noop,
    Start,
    Stop,
}

impl SequenceAction {
    /// `noop`, `start` or `stop`.
    pub fn as_str(self) -> &'static str {
        match self {
            SequenceAction::Noop => "noop",
            SequenceAction::Start => "start",
            SequenceAction::Stop => "stop",
        }
    }

    /// From the wire value; unknown values are `Noop`.
    pub fn from_proto(value: i32) -> SequenceAction {
        match Action::try_from(value).unwrap_or(Action::Noop) {
            Action::Noop => SequenceAction::Noop,
            Action::Start => SequenceAction::Start,
            Action::Stop => SequenceAction::Stop,
        }
    }

    /// The wire enum.
    pub fn to_proto(self) -> Action {
        match self {
            SequenceAction::Noop => Action::Noop,
            SequenceAction::Start => Action::Start,
            SequenceAction::Stop => Action::Stop,
        }
    }
}

impl std::fmt::Display for SequenceAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A known event type whose bytes do not decode.
#[derive(Debug, thiserror::Error)]
#[error("malformed {type_url}: {source}")]
pub struct DecodeError {
    pub type_url: String,
    #[source]
    pub source: prost::DecodeError,
}

/// The protobuf full name in a `type_url` (whatever precedes the last `/` is ignored).
fn full_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// Decodes an event sink payload. Unknown types are [`NodeEvent::Other`]; only a known type
/// with undecodable bytes is an error.
pub fn decode(any: &Any) -> Result<NodeEvent, DecodeError> {
    let malformed = |source| DecodeError {
        type_url: any.type_url.clone(),
        source,
    };
    match full_name(&any.type_url) {
        MACHINE_STATUS_EVENT => {
            let event = MachineStatusEvent::decode(any.value.as_slice()).map_err(malformed)?;
            let status = event.status.unwrap_or_default();
            Ok(NodeEvent::MachineStatus {
                stage: Stage::from_proto(event.stage),
                ready: status.ready,
                unmet: status
                    .unmet_conditions
                    .into_iter()
                    .map(|c| (c.name, c.reason))
                    .collect(),
            })
        }
        SEQUENCE_EVENT => {
            let event = SequenceEvent::decode(any.value.as_slice()).map_err(malformed)?;
            Ok(NodeEvent::Sequence {
                sequence: event.sequence,
                action: SequenceAction::from_proto(event.action),
                error: event.error.map(error_text),
            })
        }
        _ => Ok(NodeEvent::Other {
            type_url: any.type_url.clone(),
        }),
    }
}

/// Decodes `EventRequest.data`; a request without data is `Other` with an empty `type_url`.
pub fn decode_request(request: &EventRequest) -> Result<NodeEvent, DecodeError> {
    match &request.data {
        Some(any) => decode(any),
        None => Ok(NodeEvent::Other {
            type_url: String::new(),
        }),
    }
}

fn error_text(error: common::Error) -> String {
    if !error.message.is_empty() {
        return error.message;
    }
    match common::Code::try_from(error.code) {
        Ok(code) => code.as_str_name().to_ascii_lowercase(),
        Err(_) => format!("error code {}", error.code),
    }
}

/// `machine.MachineStatusEvent` as an `Any`.
pub fn encode_machine_status(stage: Stage, ready: bool, unmet: &[(String, String)]) -> Any {
    let event = MachineStatusEvent {
        stage: stage.to_proto() as i32,
        status: Some(MachineStatus {
            ready,
            unmet_conditions: unmet
                .iter()
                .map(|(name, reason)| UnmetCondition {
                    name: name.clone(),
                    reason: reason.clone(),
                })
                .collect(),
        }),
    };
    to_any(MACHINE_STATUS_EVENT, &event)
}

/// `machine.SequenceEvent` as an `Any`; an error is sent as `common.Error{code: FATAL}`.
pub fn encode_sequence(sequence: &str, action: SequenceAction, error: Option<&str>) -> Any {
    let event = SequenceEvent {
        sequence: sequence.to_string(),
        action: action.to_proto() as i32,
        error: error.map(|message| common::Error {
            code: common::Code::Fatal as i32,
            message: message.to_string(),
            details: vec![],
        }),
    };
    to_any(SEQUENCE_EVENT, &event)
}

/// Any prost message as an `Any` with a Talos-style `type_url` (`full_name` like
/// `machine.PhaseEvent`).
pub fn to_any<M: Message>(full_name: &str, message: &M) -> Any {
    Any {
        type_url: format!("{TYPE_URL_PREFIX}{full_name}"),
        value: message.encode_to_vec(),
    }
}

/// An `EventRequest` as a node publishes it.
pub fn event_request(
    data: Any,
    id: impl Into<String>,
    actor_id: impl Into<String>,
) -> EventRequest {
    EventRequest {
        data: Some(data),
        id: id.into(),
        actor_id: actor_id.into(),
    }
}

impl NodeEvent {
    /// The inverse of [`decode`]; `None` for [`NodeEvent::Other`], whose payload is unknown.
    pub fn encode(&self) -> Option<Any> {
        match self {
            NodeEvent::MachineStatus {
                stage,
                ready,
                unmet,
            } => Some(encode_machine_status(*stage, *ready, unmet)),
            NodeEvent::Sequence {
                sequence,
                action,
                error,
            } => Some(encode_sequence(sequence, *action, error.as_deref())),
            NodeEvent::Other { .. } => None,
        }
    }
}
