//! Pins the Talos wire format: field numbers (checked against hand-written prost structs and
//! raw tag bytes, independent of the .proto files) and gRPC service names.

use drover_talos::proto::common::{self, Metadata};
use drover_talos::proto::events::EventRequest;
use drover_talos::proto::google::rpc::Status as RpcStatus;
use drover_talos::proto::machine::machine_status_event::machine_status::UnmetCondition;
use drover_talos::proto::machine::machine_status_event::{MachineStage, MachineStatus};
use drover_talos::proto::machine::{
    ApplyConfigurationRequest, EtcdMember, EtcdMemberStatus, FeaturesInfo, MachineStatusEvent,
    PlatformInfo, SequenceEvent, Version, VersionInfo, apply_configuration_request, sequence_event,
};
use drover_talos::proto::storage::Disk;
use prost::Message;

// ---- hand-written mirrors of the wire tables ----

#[derive(Clone, PartialEq, prost::Message)]
struct WireStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireMetadata {
    #[prost(string, tag = "1")]
    hostname: String,
    #[prost(string, tag = "2")]
    error: String,
    #[prost(message, optional, tag = "3")]
    status: Option<WireStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireVersionInfo {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(string, tag = "2")]
    sha: String,
    #[prost(string, tag = "3")]
    built: String,
    #[prost(string, tag = "4")]
    go_version: String,
    #[prost(string, tag = "5")]
    os: String,
    #[prost(string, tag = "6")]
    arch: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WirePlatform {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    mode: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireFeatures {
    #[prost(bool, tag = "1")]
    rbac: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireVersion {
    #[prost(message, optional, tag = "1")]
    metadata: Option<WireMetadata>,
    #[prost(message, optional, tag = "2")]
    version: Option<WireVersionInfo>,
    #[prost(message, optional, tag = "3")]
    platform: Option<WirePlatform>,
    #[prost(message, optional, tag = "4")]
    features: Option<WireFeatures>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireUnmet {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    reason: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireMachineStatus {
    #[prost(bool, tag = "1")]
    ready: bool,
    #[prost(message, repeated, tag = "2")]
    unmet_conditions: Vec<WireUnmet>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireMachineStatusEvent {
    #[prost(int32, tag = "1")]
    stage: i32,
    #[prost(message, optional, tag = "2")]
    status: Option<WireMachineStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireError {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireSequenceEvent {
    #[prost(string, tag = "1")]
    sequence: String,
    #[prost(int32, tag = "2")]
    action: i32,
    #[prost(message, optional, tag = "3")]
    error: Option<WireError>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireDisk {
    #[prost(uint64, tag = "1")]
    size: u64,
    #[prost(string, tag = "2")]
    model: String,
    #[prost(string, tag = "3")]
    device_name: String,
    #[prost(string, tag = "4")]
    name: String,
    #[prost(string, tag = "5")]
    serial: String,
    // Fields 6..=10 exist on real nodes; the decoder must skip them.
    #[prost(string, tag = "6")]
    modalias: String,
    #[prost(bool, tag = "11")]
    system_disk: bool,
}

// ---- tests ----

#[test]
fn version_field_numbers() {
    let version = Version {
        metadata: Some(Metadata {
            hostname: "node-a".into(),
            error: String::new(),
            status: Some(RpcStatus {
                code: 7,
                message: "denied".into(),
                details: vec![],
            }),
        }),
        version: Some(VersionInfo {
            tag: "v1.13.8".into(),
            sha: "abc123".into(),
            built: "2026-10-01".into(),
            go_version: "go1.25".into(),
            os: "linux".into(),
            arch: "amd64".into(),
        }),
        platform: Some(PlatformInfo {
            name: "metal".into(),
            mode: "metal".into(),
        }),
        features: Some(FeaturesInfo { rbac: true }),
    };
    let bytes = version.encode_to_vec();
    // Field 1 (metadata), length-delimited: tag byte 0x0a; inside, hostname (1) comes first.
    assert_eq!(&bytes[..4], &[0x0a, 20, 0x0a, 6]);
    assert_eq!(&bytes[4..10], b"node-a");
    // Then metadata.status (3, length-delimited): 0x1a.
    assert_eq!(bytes[10], 0x1a);

    let wire = WireVersion::decode(bytes.as_slice()).unwrap();
    let md = wire.metadata.unwrap();
    assert_eq!(md.hostname, "node-a");
    assert_eq!(
        md.status.unwrap(),
        WireStatus {
            code: 7,
            message: "denied".into()
        }
    );
    let info = wire.version.unwrap();
    assert_eq!(info.tag, "v1.13.8");
    assert_eq!(info.sha, "abc123");
    assert_eq!(info.built, "2026-10-01");
    assert_eq!(info.go_version, "go1.25");
    assert_eq!(info.os, "linux");
    assert_eq!(info.arch, "amd64");
    assert_eq!(
        wire.platform.unwrap(),
        WirePlatform {
            name: "metal".into(),
            mode: "metal".into()
        }
    );
    assert!(wire.features.unwrap().rbac);

    // And the other way round.
    let back = Version::decode(
        WireVersion {
            version: Some(WireVersionInfo {
                tag: "v1.11.0".into(),
                arch: "arm64".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
        .as_slice(),
    )
    .unwrap();
    assert_eq!(back.version.as_ref().unwrap().tag, "v1.11.0");
    assert_eq!(back.version.unwrap().arch, "arm64");
}

#[test]
fn machine_status_event_field_numbers() {
    let event = MachineStatusEvent {
        stage: MachineStage::Running as i32,
        status: Some(MachineStatus {
            ready: true,
            unmet_conditions: vec![UnmetCondition {
                name: "time".into(),
                reason: "not synced".into(),
            }],
        }),
    };
    let bytes = event.encode_to_vec();
    // stage = 1 (varint) = RUNNING (4); status = 2 (length-delimited); ready = 1 (varint) true;
    // unmet_conditions = 2 (length-delimited) { name = 1, reason = 2 }.
    assert_eq!(&bytes[..2], &[0x08, 4]);
    assert_eq!(bytes[2], 0x12);
    assert_eq!(&bytes[4..6], &[0x08, 1]);
    assert_eq!(bytes[6], 0x12);
    assert_eq!(&bytes[8..10], &[0x0a, 4]);
    assert_eq!(&bytes[10..14], b"time");
    assert_eq!(bytes[14], 0x12);

    let wire = WireMachineStatusEvent::decode(bytes.as_slice()).unwrap();
    assert_eq!(wire.stage, 4);
    let status = wire.status.unwrap();
    assert!(status.ready);
    assert_eq!(
        status.unmet_conditions,
        vec![WireUnmet {
            name: "time".into(),
            reason: "not synced".into()
        }]
    );

    // Enum values of MachineStage.
    let values = [
        (MachineStage::Unknown, 0),
        (MachineStage::Booting, 1),
        (MachineStage::Installing, 2),
        (MachineStage::Maintenance, 3),
        (MachineStage::Running, 4),
        (MachineStage::Rebooting, 5),
        (MachineStage::ShuttingDown, 6),
        (MachineStage::Resetting, 7),
        (MachineStage::Upgrading, 8),
    ];
    for (stage, value) in values {
        assert_eq!(stage as i32, value, "{stage:?}");
    }
}

#[test]
fn sequence_event_and_error_field_numbers() {
    let event = SequenceEvent {
        sequence: "install".into(),
        action: sequence_event::Action::Stop as i32,
        error: Some(common::Error {
            code: common::Code::Canceled as i32,
            message: "aborted".into(),
            details: vec![],
        }),
    };
    let wire = WireSequenceEvent::decode(event.encode_to_vec().as_slice()).unwrap();
    assert_eq!(wire.sequence, "install");
    assert_eq!(wire.action, 2);
    assert_eq!(
        wire.error.unwrap(),
        WireError {
            code: 2,
            message: "aborted".into()
        }
    );
    assert_eq!(sequence_event::Action::Noop as i32, 0);
    assert_eq!(sequence_event::Action::Start as i32, 1);
    assert_eq!(common::Code::Fatal as i32, 0);
    assert_eq!(common::Code::Locked as i32, 1);
}

#[test]
fn disk_field_numbers_and_unknown_fields() {
    let wire = WireDisk {
        size: 1 << 40,
        model: "Samsung".into(),
        device_name: "/dev/nvme0n1".into(),
        name: "nvme0n1".into(),
        serial: "S4X".into(),
        modalias: "nvme:v144D".into(),
        system_disk: true,
    };
    let disk = Disk::decode(wire.encode_to_vec().as_slice()).unwrap();
    assert_eq!(disk.size, 1 << 40);
    assert_eq!(disk.model, "Samsung");
    assert_eq!(disk.device_name, "/dev/nvme0n1");
    assert_eq!(disk.name, "nvme0n1");
    assert_eq!(disk.serial, "S4X");
    assert!(disk.system_disk);
    // system_disk = 11, varint: tag byte 0x58.
    let only = Disk {
        system_disk: true,
        ..Default::default()
    }
    .encode_to_vec();
    assert_eq!(only, vec![0x58, 1]);
}

#[test]
fn machine_api_request_field_numbers() {
    let apply = ApplyConfigurationRequest {
        data: b"x".to_vec(),
        mode: apply_configuration_request::Mode::Staged as i32,
        dry_run: true,
        try_mode_timeout: Some(prost_types::Duration {
            seconds: 60,
            nanos: 0,
        }),
    };
    // data = 1 (0x0a), mode = 4 (0x20), dry_run = 5 (0x28), try_mode_timeout = 6 (0x32).
    assert_eq!(
        apply.encode_to_vec(),
        vec![0x0a, 1, b'x', 0x20, 3, 0x28, 1, 0x32, 2, 0x08, 60]
    );

    let member = EtcdMember {
        id: 5,
        ..Default::default()
    };
    assert_eq!(member.encode_to_vec(), vec![0x10, 5]);
    let status = EtcdMemberStatus {
        member_id: 1,
        storage_version: "3".into(),
        ..Default::default()
    };
    assert_eq!(status.encode_to_vec(), vec![0x50, 1, 0x5a, 1, b'3']);

    let request = EventRequest {
        data: Some(prost_types::Any {
            type_url: "t".into(),
            value: vec![],
        }),
        id: "i".into(),
        actor_id: "a".into(),
    };
    assert_eq!(
        request.encode_to_vec(),
        vec![0x0a, 3, 0x0a, 1, b't', 0x12, 1, b'i', 0x1a, 1, b'a']
    );
}

#[test]
fn memory_and_cpu_info_field_numbers() {
    use drover_talos::proto::machine::{CpUsInfo, CpuInfo, MemInfo, Memory};

    // Memory { metadata = 1; MemInfo meminfo = 2 }, MemInfo { memtotal = 1, memfree = 2 }.
    let memory = Memory {
        metadata: Some(Metadata {
            hostname: "h".into(),
            ..Default::default()
        }),
        meminfo: Some(MemInfo {
            memtotal: 5,
            memfree: 1,
            directmap1g: 2,
            ..Default::default()
        }),
    };
    // directmap1g = 48: tag (48 << 3) = 384 = varint 0x80 0x03.
    assert_eq!(
        memory.encode_to_vec(),
        vec![
            0x0a, 3, 0x0a, 1, b'h', 0x12, 7, 0x08, 5, 0x10, 1, 0x80, 0x03, 2
        ]
    );

    // CPUsInfo { metadata = 1; repeated CPUInfo cpu_info = 2 },
    // CPUInfo { processor = 1; cpu_cores = 13 }.
    let cpus = CpUsInfo {
        metadata: None,
        cpu_info: vec![CpuInfo {
            processor: 3,
            cpu_cores: 4,
            ..Default::default()
        }],
    };
    assert_eq!(cpus.encode_to_vec(), vec![0x12, 4, 0x08, 3, 0x68, 4]);
}

#[test]
fn upgrade_field_numbers() {
    use drover_talos::proto::machine::lifecycle_service_install_progress::Response;
    use drover_talos::proto::machine::{
        InstallArtifactsSource, LifecycleServiceInstallProgress, LifecycleServiceUpgradeRequest,
        LifecycleServiceUpgradeResponse, Upgrade, UpgradeRequest,
    };

    // image = 1 (0x0a), preserve = 2 (0x10), stage = 3 (0x18), force = 4 (0x20),
    // reboot_mode = 5 (0x28).
    let legacy = UpgradeRequest {
        image: "i".into(),
        preserve: true,
        stage: true,
        force: true,
        reboot_mode: 1,
    };
    assert_eq!(
        legacy.encode_to_vec(),
        vec![0x0a, 1, b'i', 0x10, 1, 0x18, 1, 0x20, 1, 0x28, 1]
    );
    // Upgrade { metadata = 1; ack = 2; actor_id = 3 }.
    let ack = Upgrade {
        metadata: None,
        ack: "a".into(),
        actor_id: "b".into(),
    };
    assert_eq!(ack.encode_to_vec(), vec![0x12, 1, b'a', 0x1a, 1, b'b']);

    // containerd = 1 {driver = 1, namespace = 2}, source = 2 {image_name = 1}.
    let lifecycle = LifecycleServiceUpgradeRequest {
        containerd: Some(common::ContainerdInstance {
            driver: common::ContainerDriver::Cri as i32,
            namespace: common::ContainerdNamespace::NsSystem as i32,
        }),
        source: Some(InstallArtifactsSource {
            image_name: "i".into(),
        }),
    };
    assert_eq!(
        lifecycle.encode_to_vec(),
        vec![0x0a, 4, 0x08, 1, 0x10, 1, 0x12, 3, 0x0a, 1, b'i']
    );
    // progress = 1 { oneof: message = 1 | exit_code = 2 }.
    let progress = |response| LifecycleServiceUpgradeResponse {
        progress: Some(LifecycleServiceInstallProgress {
            response: Some(response),
        }),
    };
    assert_eq!(
        progress(Response::Message("m".into())).encode_to_vec(),
        vec![0x0a, 3, 0x0a, 1, b'm']
    );
    // A zero exit code is still sent: it is a oneof member.
    assert_eq!(
        progress(Response::ExitCode(0)).encode_to_vec(),
        vec![0x0a, 2, 0x10, 0]
    );
}

#[test]
fn grpc_service_names() {
    use drover_talos::proto::{events, machine, storage};
    assert_eq!(
        machine::machine_service_server::SERVICE_NAME,
        "machine.MachineService"
    );
    assert_eq!(
        machine::lifecycle_service_server::SERVICE_NAME,
        "machine.LifecycleService"
    );
    assert_eq!(
        storage::storage_service_server::SERVICE_NAME,
        "storage.StorageService"
    );
    assert_eq!(
        events::event_sink_service_server::SERVICE_NAME,
        "events.EventSinkService"
    );
}
