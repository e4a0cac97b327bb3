//! Asks a registry's backend whether a project exists, so that a publisher that is not
//! *pending* cannot create a project on its first upload (as on PyPI, only a pending publisher
//! may do that).

use std::collections::HashMap;
use std::time::Duration;

use portcullis_rules::{ProjectName, Protocol};

use crate::config::Registry;
use crate::protocol::path::percent_encode_segment;

/// Largest npm package document or PyPI project index read from a backend.
pub const MAX_DOCUMENT_BYTES: usize = 64 << 20;

/// One HTTP client per registry backend, with the backend's TLS settings and credential.
pub struct ProjectProbe {
    clients: HashMap<String, (reqwest::Client, String)>,
}

/// Why the backend could not answer a question about a project.
#[derive(Debug, thiserror::Error)]
#[error("the registry backend could not answer: {0}")]
pub struct ProbeError(String);

impl ProbeError {
    /// An error saying `why`.
    pub fn new(why: impl Into<String>) -> ProbeError {
        ProbeError(why.into())
    }
}

impl ProjectProbe {
    /// Clients for every registry; `timeout` bounds each question.
    pub fn new<'a>(
        registries: impl IntoIterator<Item = &'a std::sync::Arc<Registry>>,
        timeout: Duration,
    ) -> Result<Self, ProbeError> {
        let mut clients = HashMap::new();
        for registry in registries {
            let upstream = &registry.upstream;
            let mut builder = reqwest::Client::builder()
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy();
            let base = match &upstream.tls {
                None => format!("http://{}", upstream.address),
                Some(tls) => {
                    builder = builder.resolve(&tls.sni, upstream.address);
                    if let Some(cas) = &tls.ca_certificates {
                        for der in cas.iter() {
                            let cert = reqwest::Certificate::from_der(der).map_err(|e| ProbeError(e.to_string()))?;
                            builder = builder.add_root_certificate(cert);
                        }
                    }
                    format!("https://{}:{}", tls.sni, upstream.address.port())
                }
            };
            let client = builder.build().map_err(|e| ProbeError(e.to_string()))?;
            clients.insert(registry.name.clone(), (client, base));
        }
        Ok(ProjectProbe { clients })
    }

    /// A `GET` of `path` on `registry`'s backend, with the backend's credential, or else
    /// `client_authorization` when given (the publisher's own, for backends that guard reads).
    async fn get(
        &self,
        registry: &Registry,
        path: &str,
        accept: Option<&str>,
        client_authorization: Option<&http::HeaderValue>,
    ) -> Result<reqwest::Response, ProbeError> {
        let (client, base) = self
            .clients
            .get(&registry.name)
            .ok_or_else(|| ProbeError(format!("no client for registry {:?}", registry.name)))?;
        let mut request = client.get(format!("{base}{path}"));
        if let Some(accept) = accept {
            request = request.header(http::header::ACCEPT, accept);
        }
        if let Some(credential) = &registry.backend_credential {
            request = request.header(http::header::AUTHORIZATION, credential.header_value());
        } else if let Some(value) = client_authorization {
            request = request.header(http::header::AUTHORIZATION, value.clone());
        }
        request
            .send()
            .await
            .map_err(|e| ProbeError(e.without_url().to_string()))
    }

    /// `GET path` (bounded body, with the backend's credential or else the client's): the body
    /// on 200; `None` when the backend does not have it (404 or 410, and a redirect too when
    /// `redirect_means_absent`: how simple indexes answer for an unknown project); an error
    /// naming `what` otherwise.
    async fn document(
        &self,
        registry: &Registry,
        (path, accept): (&str, &str),
        client_authorization: Option<&http::HeaderValue>,
        what: &str,
        redirect_means_absent: bool,
    ) -> Result<Option<Vec<u8>>, ProbeError> {
        let response = self.get(registry, path, Some(accept), client_authorization).await?;
        match response.status().as_u16() {
            200 => read_bounded(response, what).await.map(Some),
            404 | 410 => Ok(None),
            300..=399 if redirect_means_absent => Ok(None),
            other => Err(ProbeError(format!("the backend answered {other} for {what}"))),
        }
    }

    /// A `GET` of `path` on `registry`'s backend with the backend's credential, for reading a
    /// committed file or page back (the TUF feed); the response whatever its status.
    pub async fn fetch(
        &self,
        registry: &Registry,
        path: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, ProbeError> {
        self.get(registry, path, accept, None).await
    }

    /// Whether `project` exists on `registry`'s backend: `GET /simple/<name>/` (PyPI) or
    /// `GET /<name>` (npm) with the backend's own credential; 200 means yes, 404, 410 and
    /// redirects (pypiserver's fallback to another index) mean no.
    pub async fn exists(&self, registry: &Registry, project: &ProjectName) -> Result<bool, ProbeError> {
        let path = match registry.protocol {
            Protocol::Pypi => format!("/simple/{}/", project.as_str()),
            Protocol::Npm => format!("/{}", percent_encode_segment(project.as_str())),
        };
        let response = self.get(registry, &path, None, None).await?;
        match response.status().as_u16() {
            200..=299 => Ok(true),
            404 | 410 | 300..=399 => Ok(false),
            other => Err(ProbeError(format!("the backend answered {other}"))),
        }
    }

    /// The npm document of `package` as the backend has it (`GET /<name>?write=true`), with
    /// the backend's credential, or else `client_authorization`; `None` when the backend has
    /// no such package. Bodies over [`MAX_DOCUMENT_BYTES`] are an error, never truncated.
    pub async fn npm_document(
        &self,
        registry: &Registry,
        package: &ProjectName,
        client_authorization: Option<&http::HeaderValue>,
    ) -> Result<Option<serde_json::Value>, ProbeError> {
        let path = format!("/{}?write=true", percent_encode_segment(package.as_str()));
        let Some(body) = self
            .document(
                registry,
                (&path, "application/json"),
                client_authorization,
                "the package document",
                false,
            )
            .await?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| ProbeError(format!("the package document is not JSON: {e}")))
    }

    /// The versions of a PyPI project as the backend's simple index lists its files
    /// (`GET /simple/<name>/`, with the backend's credential or else the client's); `None`
    /// when the backend does not know the project. Pages over [`MAX_DOCUMENT_BYTES`] are an
    /// error.
    pub async fn pypi_versions(
        &self,
        registry: &Registry,
        project: &ProjectName,
        client_authorization: Option<&http::HeaderValue>,
    ) -> Result<Option<Vec<String>>, ProbeError> {
        let path = format!("/simple/{}/", project.as_str());
        let page = self
            .document(
                registry,
                (&path, "text/html"),
                client_authorization,
                "the project index",
                true,
            )
            .await?;
        Ok(page.map(|page| versions_in_simple_page(&String::from_utf8_lossy(&page), project)))
    }

    /// The versions of `project` on a devpi index (`index` is `/<user>/<index>`) as devpi
    /// holds them on that index itself, without its bases (`GET <index>/<name>?ignore_bases`
    /// as JSON, with the backend's credential or else the client's): exactly what a devpi
    /// deletion acts on. `None` when the index does not have the project.
    pub async fn devpi_versions(
        &self,
        registry: &Registry,
        index: &str,
        project: &ProjectName,
        client_authorization: Option<&http::HeaderValue>,
    ) -> Result<Option<Vec<String>>, ProbeError> {
        let path = format!("{index}/{}?ignore_bases", project.as_str());
        let body = self
            .document(
                registry,
                (&path, "application/json"),
                client_authorization,
                "the project's versions",
                false,
            )
            .await?;
        body.map(|body| versions_in_devpi_project(&body)).transpose()
    }
}

/// Reads a response body of at most [`MAX_DOCUMENT_BYTES`]; a longer one is an error, never
/// truncated.
async fn read_bounded(mut response: reqwest::Response, what: &str) -> Result<Vec<u8>, ProbeError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ProbeError(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(ProbeError(format!("{what} is larger than {MAX_DOCUMENT_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The versions in devpi's JSON view of a project (`{"type": "projectconfig", "result":
/// {"<version>": {...}, ...}}`), as devpi spells them.
pub fn versions_in_devpi_project(body: &[u8]) -> Result<Vec<String>, ProbeError> {
    let document: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ProbeError(format!("the project's versions are not JSON: {e}")))?;
    let result = document
        .get("result")
        .and_then(serde_json::Value::as_object)
        .filter(|_| document.get("type").and_then(serde_json::Value::as_str) == Some("projectconfig"))
        .ok_or_else(|| ProbeError("the project's versions are not a devpi projectconfig".into()))?;
    Ok(result.keys().cloned().collect())
}

/// The distinct versions (as spelled in the file names) of `project`'s files listed in a PEP
/// 503 simple page: the text of each `<a>` element is a file name.
pub fn versions_in_simple_page(page: &str, project: &ProjectName) -> Vec<String> {
    let mut versions: Vec<String> = Vec::new();
    for piece in page.split("</a>") {
        let Some(text) = piece.rsplit('>').next() else {
            continue;
        };
        let Some((name, version)) = crate::protocol::pypi::split_filename(text.trim()) else {
            continue;
        };
        let normalised = crate::protocol::pypi::normalize_version(&version);
        if name == project.as_str()
            && !versions
                .iter()
                .any(|v| crate::protocol::pypi::normalize_version(v) == normalised)
        {
            versions.push(version);
        }
    }
    versions
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_rules::Protocol;

    #[test]
    fn simple_pages_list_the_project_versions_once() {
        let page = r#"<html><body><h1>Links for demo-pkg</h1>
            <a href="../../packages/demo_pkg-1.0.tar.gz#sha256=ab">demo_pkg-1.0.tar.gz</a><br>
            <a href="../../packages/demo_pkg-1.0-py3-none-any.whl#sha256=cd">demo_pkg-1.0-py3-none-any.whl</a><br>
            <a href="../../packages/Demo.Pkg-1.1.zip">Demo.Pkg-1.1.zip</a>
            <a href="x">other_pkg-9.0.tar.gz</a>
            <a href="y">not a file</a></body></html>"#;
        let project = ProjectName::parse(Protocol::Pypi, "demo-pkg").expect("name");
        assert_eq!(
            versions_in_simple_page(page, &project),
            vec!["1.0".to_owned(), "1.1".to_owned()]
        );
        assert!(versions_in_simple_page("", &project).is_empty());
    }

    #[test]
    fn devpi_project_views_list_the_versions_as_spelled() {
        let body = br#"{"type": "projectconfig", "result": {"1.0": {"name": "Demo-Pkg"}, "2.0.post1": {}}}"#;
        let mut versions = versions_in_devpi_project(body).expect("versions");
        versions.sort();
        assert_eq!(versions, vec!["1.0".to_owned(), "2.0.post1".to_owned()]);
        assert_eq!(
            versions_in_devpi_project(br#"{"type": "projectconfig", "result": {}}"#).expect("empty"),
            Vec::<String>::new()
        );
        for bad in [
            &b"<html>"[..],
            br#"{"type": "indexconfig", "result": {}}"#,
            br#"{"result": []}"#,
        ] {
            assert!(versions_in_devpi_project(bad).is_err());
        }
    }
}
