use std::fmt;

/// How a node reaches the provisioning API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `grpc://`: plaintext HTTP/2 (h2c).
    Plaintext,
    /// `https://`: TLS, server certificate checked against the system roots.
    Tls,
}

/// A parsed `siderolink.api` value, e.g. `grpc://10.5.0.1:8090?jointoken=abc&grpc_tunnel=true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinUrl {
    pub transport: Transport,
    pub host: String,
    pub port: u16,
    pub join_token: Option<String>,
    /// The node asks for WireGuard carried over gRPC (`grpc_tunnel=true`).
    pub grpc_tunnel: bool,
}

/// A `siderolink.api` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinUrlError {
    #[error("siderolink API URL {url:?} is not a valid URL: {reason}")]
    Invalid { url: String, reason: String },
    #[error(
        "siderolink API URL {url:?} has scheme {scheme:?}; use grpc:// (plaintext) or https:// (TLS)"
    )]
    Scheme { url: String, scheme: String },
    #[error("siderolink API URL {url:?} has no host")]
    NoHost { url: String },
    #[error("siderolink API URL {url:?} has no port; grpc:// needs one, e.g. grpc://host:8090")]
    NoPort { url: String },
}

impl JoinUrl {
    /// Parses the URL as Talos does: no scheme means `grpc://`; `https://` defaults to port 443.
    pub fn parse(input: &str) -> Result<Self, JoinUrlError> {
        let with_scheme = if input.contains("://") {
            input.to_owned()
        } else {
            format!("grpc://{input}")
        };
        let parsed = ::url::Url::parse(&with_scheme).map_err(|e| JoinUrlError::Invalid {
            url: input.to_owned(),
            reason: e.to_string(),
        })?;
        let transport = match parsed.scheme() {
            "grpc" => Transport::Plaintext,
            "https" => Transport::Tls,
            other => {
                return Err(JoinUrlError::Scheme {
                    url: input.to_owned(),
                    scheme: other.to_owned(),
                });
            }
        };
        let host = match parsed.host() {
            Some(::url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => {
                return Err(JoinUrlError::NoHost {
                    url: input.to_owned(),
                });
            }
        };
        let port = match (parsed.port(), transport) {
            (Some(port), _) => port,
            (None, Transport::Tls) => 443,
            (None, Transport::Plaintext) => {
                return Err(JoinUrlError::NoPort {
                    url: input.to_owned(),
                });
            }
        };
        let mut join_token = None;
        let mut grpc_tunnel = false;
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "jointoken" => join_token = Some(value.into_owned()),
                "grpc_tunnel" => grpc_tunnel = value.eq_ignore_ascii_case("true") || value == "1",
                _ => {}
            }
        }
        Ok(Self {
            transport,
            host,
            port,
            join_token,
            grpc_tunnel,
        })
    }

    /// The URL a gRPC client connects to: `http://host:port` or `https://host:port`.
    pub fn connect_uri(&self) -> String {
        let scheme = match self.transport {
            Transport::Plaintext => "http",
            Transport::Tls => "https",
        };
        format!("{scheme}://{}:{}", self.host_for_uri(), self.port)
    }

    fn host_for_uri(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

impl fmt::Display for JoinUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            Transport::Plaintext => "grpc",
            Transport::Tls => "https",
        };
        write!(f, "{scheme}://{}", self.host_for_uri())?;
        if !(self.transport == Transport::Tls && self.port == 443) {
            write!(f, ":{}", self.port)?;
        }
        let mut query = ::url::form_urlencoded::Serializer::new(String::new());
        if let Some(token) = &self.join_token {
            query.append_pair("jointoken", token);
        }
        if self.grpc_tunnel {
            query.append_pair("grpc_tunnel", "true");
        }
        let query = query.finish();
        if !query.is_empty() {
            write!(f, "?{query}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_with_token_and_tunnel() {
        let u = JoinUrl::parse("grpc://10.5.0.1:8090?jointoken=abc.def&grpc_tunnel=true").unwrap();
        assert_eq!(u.transport, Transport::Plaintext);
        assert_eq!((u.host.as_str(), u.port), ("10.5.0.1", 8090));
        assert_eq!(u.join_token.as_deref(), Some("abc.def"));
        assert!(u.grpc_tunnel);
        assert_eq!(u.connect_uri(), "http://10.5.0.1:8090");
    }

    #[test]
    fn no_scheme_means_grpc() {
        let u = JoinUrl::parse("drover.example:8090?jointoken=t").unwrap();
        assert_eq!(u.transport, Transport::Plaintext);
        assert_eq!(u.host, "drover.example");
        assert!(!u.grpc_tunnel);
    }

    #[test]
    fn https_defaults_to_443() {
        let u = JoinUrl::parse("https://drover.example?jointoken=t").unwrap();
        assert_eq!((u.transport, u.port), (Transport::Tls, 443));
        assert_eq!(u.connect_uri(), "https://drover.example:443");
    }

    #[test]
    fn ipv6_hosts() {
        let u = JoinUrl::parse("grpc://[fd00::1]:8090").unwrap();
        assert_eq!(u.host, "fd00::1");
        assert_eq!(u.join_token, None);
        assert_eq!(u.connect_uri(), "http://[fd00::1]:8090");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        assert!(matches!(
            JoinUrl::parse("ftp://x:1"),
            Err(JoinUrlError::Scheme { .. })
        ));
        assert!(matches!(
            JoinUrl::parse("grpc://host"),
            Err(JoinUrlError::NoPort { .. })
        ));
        assert!(matches!(
            JoinUrl::parse("grpc://:80"),
            Err(JoinUrlError::Invalid { .. })
        ));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "grpc://10.5.0.1:8090?jointoken=abc.def",
            "grpc://10.5.0.1:8090?jointoken=abc&grpc_tunnel=true",
            "grpc://[fd00::1]:8090",
            "https://drover.example?jointoken=x",
        ] {
            let u = JoinUrl::parse(s).unwrap();
            assert_eq!(u.to_string(), s, "display of {s}");
            assert_eq!(JoinUrl::parse(&u.to_string()).unwrap(), u);
        }
    }
}
