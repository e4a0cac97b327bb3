//! The proxy's listening endpoints and the buffers each client connection gets.
//!
//! pingora puts a 64 KiB read buffer in front of every accepted connection
//! (`DEFAULT_L4_READ_BUFFER_SIZE`, allocated and zeroed at the accept), which is most of what an
//! idle kept-alive connection costs (docs in bench/README.md, issue 19). The gateway does not
//! need it on plain TCP: pingora reads a request head into its own buffer (4 KiB, grown as
//! needed) and a body into its own body buffer, and a buffered reader hands reads at least as
//! large as itself straight to the socket anyway. So plain listeners read unbuffered. TLS
//! listeners keep a buffer of one TLS record (16 KiB): rustls reads the socket in small pieces,
//! and the buffer turns a record into one `read` instead of several.

use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};

use crate::config::validated::Listener;

/// The read buffer of a plain TCP client connection (none: see the module's doc).
pub const PLAIN_READ_BUFFER: usize = 0;
/// The read buffer of a TLS client connection: one TLS record.
pub const TLS_READ_BUFFER: usize = 16 * 1024;

/// The pingora endpoint for one configured listener.
pub fn endpoint(listener: &Listener) -> pingora::Result<ListenerConfig> {
    let address = listener.address.to_string();
    Ok(match &listener.tls {
        None => ListenerConfig::tcp(address)
            .l4_buffer(L4BufferSettings::new(PLAIN_READ_BUFFER, DEFAULT_L4_WRITE_BUFFER_SIZE)),
        Some(tls) => ListenerConfig::tcp(address)
            .tls(TlsSettings::intermediate(
                &tls.certificate.display().to_string(),
                &tls.key.display().to_string(),
            )?)
            .l4_buffer(L4BufferSettings::new(TLS_READ_BUFFER, DEFAULT_L4_WRITE_BUFFER_SIZE)),
    })
}
