//! The kernel log line format.

use chrono::{TimeZone, Utc};
use drover_talos::kmsg::{KmsgError, KmsgRecord, encode_line, format_rfc3339_nano, parse_line};

#[test]
fn round_trip() {
    let time = Utc.with_ymd_and_hms(2026, 11, 22, 10, 4, 5).unwrap()
        + chrono::Duration::nanoseconds(123_456_700);
    let mut record = KmsgRecord::new("[talos] task startAllServices (1/1): done", time);
    record.talos_level = Some("info".into());
    record.facility = Some("daemon".into());
    record.seq = Some(1842);
    record.clock = Some(18_734_112);
    record.priority = Some("info".into());

    let line = encode_line(&record);
    assert!(line.ends_with('\n'));
    assert_eq!(line.matches('\n').count(), 1);
    assert!(
        line.contains(r#""talos-time":"2026-11-22T10:04:05.1234567Z""#),
        "{line}"
    );
    assert!(line.contains(r#""talos-level":"info""#), "{line}");
    let back = parse_line(&line).unwrap();
    assert_eq!(back, record);
    assert_eq!(back.time().unwrap(), time);
}

#[test]
fn parses_a_node_line() {
    let line = r#"{"clock":5307140,"facility":"kern","msg":"virtio_net virtio1 eth0: renamed","priority":"info","seq":512,"talos-level":"info","talos-time":"2026-11-22T10:04:05.52931763Z"}"#;
    let record = parse_line(line).unwrap();
    assert_eq!(record.msg, "virtio_net virtio1 eth0: renamed");
    assert_eq!(record.facility.as_deref(), Some("kern"));
    assert_eq!(record.priority.as_deref(), Some("info"));
    assert_eq!(record.talos_level.as_deref(), Some("info"));
    assert_eq!(record.seq, Some(512));
    assert_eq!(record.clock, Some(5_307_140));
    assert_eq!(record.time().unwrap().timestamp_subsec_nanos(), 529_317_630);
    assert!(record.extra.is_empty());
}

#[test]
fn tolerates_missing_null_stringly_and_extra_keys() {
    let record = parse_line("{\"msg\":\"hello\"}\r\n").unwrap();
    assert_eq!(
        record,
        KmsgRecord {
            msg: "hello".into(),
            ..Default::default()
        }
    );
    assert_eq!(record.time(), None);

    let record = parse_line(
        r#"{"msg":"x","seq":"17","clock":null,"talos-time":"garbage","component":"kmsg"}"#,
    )
    .unwrap();
    assert_eq!(record.seq, Some(17));
    assert_eq!(record.clock, None);
    assert_eq!(record.talos_time.as_deref(), Some("garbage"));
    assert_eq!(record.time(), None);
    assert_eq!(
        record.extra.get("component"),
        Some(&serde_json::json!("kmsg"))
    );
    // Extra keys survive a round trip.
    assert_eq!(parse_line(&encode_line(&record)).unwrap(), record);

    // Missing keys are left out when encoding.
    assert_eq!(
        encode_line(&KmsgRecord {
            msg: "m".into(),
            ..Default::default()
        }),
        "{\"msg\":\"m\"}\n"
    );
}

#[test]
fn rejects_what_is_not_a_record() {
    assert!(matches!(parse_line(""), Err(KmsgError::Empty)));
    assert!(matches!(parse_line("\n"), Err(KmsgError::Empty)));
    assert!(matches!(parse_line("not json"), Err(KmsgError::Json(_))));
    assert!(matches!(
        parse_line(r#"{"seq":1}"#),
        Err(KmsgError::Json(_))
    ));
    assert!(matches!(
        parse_line(r#"{"msg":"x","seq":-1}"#),
        Err(KmsgError::Json(_))
    ));
}

#[test]
fn rfc3339_nano_like_go() {
    let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
    assert_eq!(format_rfc3339_nano(t), "2026-01-02T03:04:05Z");
    assert_eq!(
        format_rfc3339_nano(t + chrono::Duration::milliseconds(500)),
        "2026-01-02T03:04:05.5Z"
    );
    assert_eq!(
        format_rfc3339_nano(t + chrono::Duration::nanoseconds(1)),
        "2026-01-02T03:04:05.000000001Z"
    );
}
