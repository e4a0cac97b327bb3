//! Upstream peers: how the gateway connects to each backend, with timeouts always set
//! (pingora sets none by default) and, for writes, a connection that resets on abort.

use std::sync::Arc;

use pingora::upstreams::peer::{H1UpgradePolicy, HttpPeer};
use pingora::utils::tls::WrappedX509;

use crate::config::Registry;

/// Pool group for write connections, kept apart from reads so every write socket has
/// `SO_LINGER` 0 set.
const WRITE_POOL: u64 = 1;

/// Prebuilt peers for one registry.
#[derive(Clone)]
pub struct UpstreamPeers {
    read: HttpPeer,
    write: HttpPeer,
}

impl UpstreamPeers {
    /// Builds the read and write peers of `registry`.
    pub fn new(registry: &Registry) -> Self {
        let upstream = &registry.upstream;
        let (tls, sni) = match &upstream.tls {
            Some(t) => (true, t.sni.clone()),
            None => (false, String::new()),
        };
        let mut read = HttpPeer::new(upstream.address, tls, sni);
        let options = &mut read.options;
        options.connection_timeout = Some(upstream.connect_timeout);
        options.total_connection_timeout = Some(upstream.connect_timeout * 2);
        options.read_timeout = Some(upstream.read_timeout);
        options.write_timeout = Some(upstream.write_timeout);
        options.idle_timeout = Some(upstream.idle_timeout);
        // Registries have no use for protocol upgrades; a tunnel would bypass the decision path.
        options.http_upstream_request_policy.h1_upgrade = H1UpgradePolicy::Deny;
        if let Some(ca) = upstream.tls.as_ref().and_then(|t| t.ca_certificates.as_ref()) {
            let certs: Vec<WrappedX509> = ca
                .iter()
                .map(|der| WrappedX509::new(der.clone(), pingora::utils::tls::parse_x509))
                .collect();
            options.ca = Some(Arc::from(certs));
        }
        let mut write = read.clone();
        write.group_key = WRITE_POOL;
        // A write that is refused or abandoned must end with a TCP reset, never a FIN: a
        // backend that sees a short body followed by a clean close may store it (pypiserver does).
        write.options.upstream_tcp_sock_tweak_hook = Some(Arc::new(|socket| {
            socket.set_zero_linger().map_err(|e| {
                pingora::Error::because(
                    pingora::ErrorType::SocketError,
                    "setting SO_LINGER 0 on an upstream socket",
                    e,
                )
            })
        }));
        UpstreamPeers { read, write }
    }

    /// A peer for a request; writes get the resetting connection.
    pub fn peer(&self, write: bool) -> Box<HttpPeer> {
        Box::new(if write { self.write.clone() } else { self.read.clone() })
    }
}
