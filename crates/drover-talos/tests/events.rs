//! Event sink payloads: encode -> Any -> decode round trips and unknown types.

use drover_talos::events::{
    self, NodeEvent, SequenceAction, Stage, decode, decode_request, encode_machine_status,
    encode_sequence, event_request,
};
use drover_talos::proto::machine::{PhaseEvent, phase_event};
use prost::Message;

#[test]
fn machine_status_round_trip_for_every_stage() {
    for stage in Stage::ALL {
        let unmet = vec![
            ("time".to_string(), "time is not synced".to_string()),
            (
                "services".to_string(),
                "some services are not healthy".to_string(),
            ),
        ];
        let any = encode_machine_status(stage, false, &unmet);
        assert_eq!(
            any.type_url,
            "type.googleapis.com/machine.MachineStatusEvent"
        );
        let event = decode(&any).unwrap();
        assert_eq!(
            event,
            NodeEvent::MachineStatus {
                stage,
                ready: false,
                unmet: unmet.clone()
            }
        );
        assert_eq!(event.encode().unwrap(), any);
        assert_eq!(Stage::parse(stage.as_str()), Some(stage));
        assert_eq!(Stage::from_proto(stage.to_proto() as i32), stage);
    }
    let ready = decode(&encode_machine_status(Stage::Running, true, &[])).unwrap();
    assert_eq!(
        ready,
        NodeEvent::MachineStatus {
            stage: Stage::Running,
            ready: true,
            unmet: vec![]
        }
    );
}

#[test]
fn stage_names() {
    let names: Vec<_> = Stage::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "unknown",
            "booting",
            "installing",
            "maintenance",
            "running",
            "rebooting",
            "shutting_down",
            "resetting",
            "upgrading"
        ]
    );
    assert_eq!(Stage::Maintenance.to_string(), "maintenance");
    assert_eq!(Stage::parse("nope"), None);
    // A stage added by a future Talos decodes as Unknown.
    assert_eq!(Stage::from_proto(42), Stage::Unknown);
}

#[test]
fn sequence_round_trip() {
    for action in [
        SequenceAction::Noop,
        SequenceAction::Start,
        SequenceAction::Stop,
    ] {
        let any = encode_sequence("install", action, None);
        assert_eq!(any.type_url, "type.googleapis.com/machine.SequenceEvent");
        assert_eq!(
            decode(&any).unwrap(),
            NodeEvent::Sequence {
                sequence: "install".into(),
                action,
                error: None
            }
        );
    }
    let failed = NodeEvent::Sequence {
        sequence: "upgrade".into(),
        action: SequenceAction::Stop,
        error: Some("image pull failed".into()),
    };
    assert_eq!(decode(&failed.encode().unwrap()).unwrap(), failed);
}

#[test]
fn sequence_error_without_message_uses_the_code() {
    use drover_talos::proto::common;
    use drover_talos::proto::machine::{SequenceEvent, sequence_event};
    let event = SequenceEvent {
        sequence: "boot".into(),
        action: sequence_event::Action::Stop as i32,
        error: Some(common::Error {
            code: common::Code::Locked as i32,
            message: String::new(),
            details: vec![],
        }),
    };
    let any = events::to_any(events::SEQUENCE_EVENT, &event);
    match decode(&any).unwrap() {
        NodeEvent::Sequence { error, .. } => assert_eq!(error.as_deref(), Some("locked")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_types_are_other() {
    let phase = PhaseEvent {
        phase: "network".into(),
        action: phase_event::Action::Start as i32,
    };
    let any = events::to_any("machine.PhaseEvent", &phase);
    assert_eq!(
        decode(&any).unwrap(),
        NodeEvent::Other {
            type_url: "type.googleapis.com/machine.PhaseEvent".into()
        }
    );
    assert!(
        NodeEvent::Other {
            type_url: any.type_url.clone()
        }
        .encode()
        .is_none()
    );

    let foreign = prost_types::Any {
        type_url: "type.googleapis.com/acme.Thing".into(),
        value: vec![1, 2, 3],
    };
    assert_eq!(
        decode(&foreign).unwrap(),
        NodeEvent::Other {
            type_url: foreign.type_url.clone()
        }
    );

    let request = event_request(
        encode_machine_status(Stage::Booting, false, &[]),
        "id-1",
        "",
    );
    assert_eq!(request.id, "id-1");
    assert!(matches!(
        decode_request(&request).unwrap(),
        NodeEvent::MachineStatus {
            stage: Stage::Booting,
            ..
        }
    ));
    let empty = drover_talos::proto::events::EventRequest::default();
    assert_eq!(
        decode_request(&empty).unwrap(),
        NodeEvent::Other {
            type_url: String::new()
        }
    );
}

#[test]
fn other_type_url_hosts_are_accepted_and_garbage_is_an_error() {
    let mut any = encode_machine_status(Stage::Installing, false, &[]);
    any.type_url = "example.com/machine.MachineStatusEvent".into();
    assert!(matches!(
        decode(&any).unwrap(),
        NodeEvent::MachineStatus {
            stage: Stage::Installing,
            ..
        }
    ));

    let garbage = prost_types::Any {
        type_url: "type.googleapis.com/machine.SequenceEvent".into(),
        value: vec![0x0a, 0xff, 0xff],
    };
    let err = decode(&garbage).unwrap_err();
    assert!(err.to_string().contains("machine.SequenceEvent"), "{err}");
}

#[test]
fn encoded_event_request_survives_the_wire() {
    let request = event_request(
        encode_sequence("boot", SequenceAction::Start, None),
        "x",
        "actor",
    );
    let back =
        drover_talos::proto::events::EventRequest::decode(request.encode_to_vec().as_slice())
            .unwrap();
    assert_eq!(back, request);
    assert_eq!(
        decode_request(&back).unwrap(),
        NodeEvent::Sequence {
            sequence: "boot".into(),
            action: SequenceAction::Start,
            error: None
        }
    );
}
