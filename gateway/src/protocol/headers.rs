//! Request headers read one way: a single-valued header sent twice is refused (the gateway
//! would read the first, a backend may read the last or join them), and header names that a
//! CGI/WSGI backend would read as another header are dropped before forwarding.

use http::header::{HeaderMap, HeaderName};

use crate::error::Refusal;

/// The one value of `name`, if sent; refuses a second one and a value that is not visible
/// ASCII.
pub fn single(headers: &HeaderMap, name: HeaderName) -> Result<Option<&str>, Refusal> {
    let mut values = headers.get_all(&name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refusal::BadRequest(format!(
            "the request has more than one {name} header; send one (readers differ on which counts)"
        )));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| Refusal::BadRequest(format!("the {name} header is not visible ASCII")))
}

/// Names a CGI or WSGI backend (pypiserver, devpi, Warehouse behind a WSGI server) reads as
/// another header: they map `-` to `_`, so `Content_Length` and `Content-Length` both become
/// `CONTENT_LENGTH`, and which one wins is the server's choice. The gateway reads only the
/// `-` spellings, so it drops every name with `_` before forwarding, as nginx does by default
/// (`underscores_in_headers off`).
pub fn underscored(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .cloned()
        .collect();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn a_single_header_sent_twice_is_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(single(&headers, http::header::CONTENT_TYPE), Ok(None));
        headers.append(http::header::CONTENT_TYPE, HeaderValue::from_static("a/b"));
        assert_eq!(single(&headers, http::header::CONTENT_TYPE), Ok(Some("a/b")));
        headers.append(http::header::CONTENT_TYPE, HeaderValue::from_static("c/d"));
        assert!(matches!(
            single(&headers, http::header::CONTENT_TYPE),
            Err(Refusal::BadRequest(m)) if m.contains("more than one content-type")
        ));
    }

    #[test]
    fn underscored_names_are_found_once_each() {
        let mut headers = HeaderMap::new();
        headers.append("content_length", HeaderValue::from_static("1"));
        headers.append("transfer_encoding", HeaderValue::from_static("chunked"));
        headers.append("transfer_encoding", HeaderValue::from_static("x"));
        headers.append("content-length", HeaderValue::from_static("2"));
        let mut names: Vec<String> = underscored(&headers).iter().map(|n| n.to_string()).collect();
        names.sort();
        assert_eq!(names, ["content_length", "transfer_encoding"]);
    }
}
