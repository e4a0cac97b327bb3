//! A request body's path: every chunk is counted, limited, hashed, parsed and (for a decided
//! write) held back ([`Gateway::stream_chunk`]); at its end the write is decided
//! ([`Gateway::finish_write`]) and the held-back tail released, or the request refused.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use portcullis_rules::{Outcome, ProjectName, WriteAction, WriteFacts};

use super::ctx::{DecisionRecord, RequestCtx};
use super::slow_clients;
use super::Gateway;
use crate::config::Registry;
use crate::error::Refusal;
use crate::protocol::npm_body::PublishFacts;
use crate::protocol::pypi::{FormAction, FormInspector, UploadFacts};

/// What a finished write body asks for, as its parser read it.
struct WrittenBody {
    action: WriteAction,
    project: ProjectName,
    /// What the decision log says of it (version, file name and digest; or the removal).
    detail: Option<String>,
    /// The file a PyPI upload adds.
    pypi_upload: Option<UploadFacts>,
    /// An npm publish document's facts (a publish when its `tarball` is set).
    npm: Option<PublishFacts>,
}

impl Gateway {
    /// Handles one body chunk: reads it, and for a decided write holds the newest chunk back
    /// until the end of the body, where the write is decided. Returns the bytes to forward
    /// now.
    pub(super) async fn stream_chunk(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        chunk: Bytes,
        end_of_stream: bool,
    ) -> Result<Bytes, Refusal> {
        let forward = self.read_chunk(ctx, chunk, end_of_stream)?;
        let Some(write) = ctx.write.as_mut() else {
            return Ok(forward);
        };
        if !end_of_stream {
            return Ok(write.holdback.push(forward));
        }
        self.finish_write(session, ctx, forward).await
    }

    /// Counts a chunk against the size and pace limits and passes it through the write's
    /// hash and protocol parser. Returns what the parser lets through (the npm scanner may
    /// rewrite a publish: what it returns is what goes upstream).
    fn read_chunk(&self, ctx: &mut RequestCtx, chunk: Bytes, end_of_stream: bool) -> Result<Bytes, Refusal> {
        let registry = self.registry(ctx).ok_or(Refusal::Internal)?;
        ctx.body_bytes += chunk.len() as u64;
        self.check_size(ctx, registry, ctx.body_bytes)?;
        if !end_of_stream
            && slow_clients::body_too_slow(
                ctx.body_bytes,
                ctx.started,
                Instant::now(),
                self.client.header_timeout,
                self.client.min_body_rate,
            )
        {
            return Err(Refusal::RequestTimeout(format!(
                "the request body arrived too slowly (under {} bytes per second)",
                self.client.min_body_rate
            )));
        }
        let Some(write) = ctx.write.as_mut() else {
            return Ok(chunk);
        };
        write.hash(&chunk);
        if let Some(form) = write.form.as_mut() {
            form.feed(&chunk)?;
        }
        match write.npm.as_mut() {
            None => Ok(chunk),
            Some(inspector) => Ok(inspector.feed(&chunk)?),
        }
    }

    /// The whole body has been read (`last` is what its final chunk forwards): decides the
    /// write, then checks tombstones and provenance and records the upload in the ledger.
    /// Returns the held-back tail and the last bytes to release, or the refusal.
    async fn finish_write(&self, session: &Session, ctx: &mut RequestCtx, last: Bytes) -> Result<Bytes, Refusal> {
        let registry = self.registry(ctx).ok_or(Refusal::Internal)?.clone();
        let write = ctx.write.as_mut().ok_or(Refusal::Internal)?;
        let (npm_rest, npm_facts) = match write.npm.take() {
            Some(inspector) => {
                let (rest, facts) = inspector.finish()?;
                (rest, Some(facts))
            }
            None => (Bytes::new(), None),
        };
        let tail = write.holdback.release();
        let body_sha256 = write.body_sha256();
        let (form, action, project) = (write.form.take(), write.action, write.project.clone());
        let written = self
            .read_written(session, ctx, &registry, form, action, project, npm_facts)
            .await?;

        self.check_token_scope(ctx, &registry, written.action, &written.project)?;
        let rules = ctx.rules.clone().ok_or(Refusal::Internal)?;
        let decision = rules.rules.decide_write(&WriteFacts {
            registry: &registry.name,
            action: written.action,
            project: &written.project,
            body_bytes: ctx.body_bytes,
        });
        let refused = match &decision.outcome {
            Outcome::Allow => None,
            Outcome::Refuse { kind, message } => Some(Refusal::from_rules(*kind, message.clone())),
        };
        let project = written.project.clone();
        ctx.decision = Some(DecisionRecord {
            project: written.project,
            action: written.action,
            decision,
            body_sha256,
            detail: written.detail,
        });
        // The file an upload adds (the npm tarball or the PyPI distribution): named in the
        // audit log, and never one a deletion left a tombstone for.
        let tarball = written.npm.as_ref().and_then(|f| f.tarball.as_ref());
        let uploaded_file = match (tarball, &written.pypi_upload) {
            (Some(t), _) => Some((&t.version, &t.attachment)),
            (None, Some(u)) => Some((&u.version, &u.filename)),
            (None, None) => None,
        };
        if let Some((version, file)) = uploaded_file {
            ctx.upload_target = Some(format!("{}@{version} {file}", project.as_str()));
        }
        if let Some(refusal) = refused {
            return Err(refusal);
        }
        if let Some((version, file)) = uploaded_file {
            self.check_tombstones(ctx, &registry, &project, version, file).await?;
        }
        // The ledger records an upload before its last bytes are released; the backend's
        // answer marks it committed or failed (`logging`).
        if let (Some(facts), Some(tarball)) = (&written.npm, tarball) {
            let found = self
                .check_npm_provenance(ctx, &registry, &project, facts, tarball)
                .await?;
            ctx.add_decision_detail(&found.summary);
            let id = self
                .ledger_begin_npm(ctx, &registry, &project, tarball, found, &facts.dependencies)
                .await?;
            ctx.ledger.id = Some(id);
        }
        if let Some(upload) = &written.pypi_upload {
            let found = self.check_pypi_provenance(ctx, &registry, upload).await?;
            ctx.add_decision_detail(&found.summary);
            ctx.ledger.id = Some(self.ledger_begin(ctx, &registry, upload, found).await?);
        }
        Ok(concat(&[tail, last, npm_rest]))
    }

    /// What the finished body asks for: a PyPI upload or removal (from the form), an npm
    /// publish or metadata change (from the document), or the write the path named. Removals
    /// and metadata changes are decided here, against the backend's current state.
    #[allow(clippy::too_many_arguments)]
    async fn read_written(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        registry: &Registry,
        form: Option<FormInspector>,
        action: Option<WriteAction>,
        project: Option<ProjectName>,
        npm: Option<PublishFacts>,
    ) -> Result<WrittenBody, Refusal> {
        if let Some(form) = form {
            return match form.finish()? {
                FormAction::FileUpload(upload) => Ok(WrittenBody {
                    action: WriteAction::Upload,
                    project: upload.project.clone(),
                    detail: Some(format!(
                        "{} {} sha256={}",
                        upload.version,
                        upload.filename,
                        hex::encode(upload.content_sha256)
                    )),
                    pypi_upload: Some(upload),
                    npm: None,
                }),
                FormAction::RemovePackage { project, version } => {
                    self.check_token_scope(ctx, registry, WriteAction::Change, &project)?;
                    self.decide_pypi_removal(session, ctx, registry, &project, &version)
                        .await?;
                    Ok(WrittenBody {
                        action: WriteAction::Change,
                        project,
                        detail: Some(format!("remove {version}")),
                        pypi_upload: None,
                        npm: None,
                    })
                }
            };
        }
        let (Some(action), Some(project)) = (action, project) else {
            return Err(Refusal::Internal);
        };
        let Some(facts) = npm else {
            return Ok(WrittenBody {
                action,
                project,
                detail: None,
                pypi_upload: None,
                npm: None,
            });
        };
        let (action, detail) = match &facts.tarball {
            Some(_) if action != WriteAction::Upload => {
                return Err(Refusal::UnclassifiedWrite(
                    "a publish (a document with a tarball) must be a PUT of the package itself, not of a revision"
                        .into(),
                ))
            }
            Some(t) => (
                WriteAction::Upload,
                format!("{} {} sha512={}", t.version, t.attachment, hex::encode(t.sha512)),
            ),
            // A PUT of the document without a tarball: unpublish of versions, deprecate or
            // another metadata change, read against the backend's document.
            None => {
                self.check_token_scope(ctx, registry, WriteAction::Change, &project)?;
                self.decide_npm_metadata(session, ctx, registry, &project, &facts)
                    .await?;
                (WriteAction::Change, "metadata change".to_owned())
            }
        };
        Ok(WrittenBody {
            action,
            project,
            detail: Some(detail),
            pypi_upload: None,
            npm: Some(facts),
        })
    }
}

/// The parts joined in order, copied only when more than one is not empty.
pub(super) fn concat(parts: &[Bytes]) -> Bytes {
    let mut filled = parts.iter().filter(|p| !p.is_empty());
    match (filled.next(), filled.next()) {
        (None, _) => Bytes::new(),
        (Some(only), None) => only.clone(),
        _ => {
            let mut joined = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            for part in parts {
                joined.extend_from_slice(part);
            }
            joined.freeze()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_copies_only_when_two_parts_have_bytes() {
        let b = Bytes::from_static(b"b");
        assert_eq!(concat(&[Bytes::new(), b.clone(), Bytes::new()]), b);
        assert_eq!(
            concat(&[Bytes::new(), b.clone(), Bytes::new()]).as_ptr(),
            b.as_ptr(),
            "a single part is passed on, not copied"
        );
        assert_eq!(
            concat(&[Bytes::from_static(b"a"), Bytes::new(), Bytes::from_static(b"cd")]),
            Bytes::from_static(b"acd")
        );
        assert!(concat(&[Bytes::new(), Bytes::new()]).is_empty());
    }
}
