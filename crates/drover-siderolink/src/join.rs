//! What an operator gives a node so it joins: kernel arguments or join-config documents.

use std::net::Ipv6Addr;

use serde::Serialize;

use crate::{EVENT_SINK_PORT, JoinUrl, KERNEL_LOG_PORT};

/// Where a node should send its events and kernel logs, inside the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelServices {
    pub server_address: Ipv6Addr,
    pub event_sink_port: u16,
    pub kernel_log_port: u16,
}

impl TunnelServices {
    pub fn new(server_address: Ipv6Addr) -> Self {
        Self {
            server_address,
            event_sink_port: EVENT_SINK_PORT,
            kernel_log_port: KERNEL_LOG_PORT,
        }
    }

    pub fn event_sink_endpoint(&self) -> String {
        format!("[{}]:{}", self.server_address, self.event_sink_port)
    }

    pub fn kernel_log_url(&self) -> String {
        format!("tcp://[{}]:{}", self.server_address, self.kernel_log_port)
    }
}

/// The kernel arguments a node boots with to join.
pub fn kernel_args(api: &JoinUrl, services: &TunnelServices) -> Vec<String> {
    vec![
        format!("siderolink.api={api}"),
        format!("talos.events.sink={}", services.event_sink_endpoint()),
        format!("talos.logging.kernel={}", services.kernel_log_url()),
    ]
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SideroLinkConfig<'a> {
    api_version: &'a str,
    kind: &'a str,
    api_url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventSinkConfig<'a> {
    api_version: &'a str,
    kind: &'a str,
    endpoint: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KmsgLogConfig<'a> {
    api_version: &'a str,
    kind: &'a str,
    name: &'a str,
    url: String,
}

/// The same as [`kernel_args`], as a multi-document machine config patch.
pub fn join_config(api: &JoinUrl, services: &TunnelServices) -> String {
    let docs = [
        serde_yaml_ng::to_string(&SideroLinkConfig {
            api_version: "v1alpha1",
            kind: "SideroLinkConfig",
            api_url: api.to_string(),
        }),
        serde_yaml_ng::to_string(&EventSinkConfig {
            api_version: "v1alpha1",
            kind: "EventSinkConfig",
            endpoint: services.event_sink_endpoint(),
        }),
        serde_yaml_ng::to_string(&KmsgLogConfig {
            api_version: "v1alpha1",
            kind: "KmsgLogConfig",
            name: "drover-kmsg",
            url: services.kernel_log_url(),
        }),
    ];
    docs.into_iter()
        .map(|d| d.expect("plain structs serialize"))
        .collect::<Vec<_>>()
        .join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> TunnelServices {
        TunnelServices::new("fdae:41e4:649b:9303::1".parse().unwrap())
    }

    #[test]
    fn kernel_args_match_what_talos_reads() {
        let api = JoinUrl::parse("grpc://192.0.2.10:8090?jointoken=abc.def").unwrap();
        assert_eq!(
            kernel_args(&api, &services()),
            vec![
                "siderolink.api=grpc://192.0.2.10:8090?jointoken=abc.def",
                "talos.events.sink=[fdae:41e4:649b:9303::1]:8090",
                "talos.logging.kernel=tcp://[fdae:41e4:649b:9303::1]:8092",
            ]
        );
    }

    #[test]
    fn join_config_documents_parse_back() {
        let api = JoinUrl::parse("grpc://192.0.2.10:8090?jointoken=abc.def").unwrap();
        let text = join_config(&api, &services());
        let docs: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0]["kind"], "SideroLinkConfig");
        assert_eq!(
            docs[0]["apiUrl"],
            "grpc://192.0.2.10:8090?jointoken=abc.def"
        );
        assert_eq!(docs[1]["kind"], "EventSinkConfig");
        assert_eq!(docs[1]["endpoint"], "[fdae:41e4:649b:9303::1]:8090");
        assert_eq!(docs[2]["kind"], "KmsgLogConfig");
        assert_eq!(docs[2]["url"], "tcp://[fdae:41e4:649b:9303::1]:8092");
        for d in &docs {
            assert_eq!(d["apiVersion"], "v1alpha1");
        }
    }
}
