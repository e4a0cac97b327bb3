//! The demo's stack: a local OIDC issuer standing in for GitHub Actions, a real pypiserver and a
//! real Verdaccio, and one gateway in front of both (PyPI under `/pypi`, npm at the root), with
//! trusted publishers written from the identities in the real fixtures' signing certificates.
//! The local issuer signs ID tokens as GitHub Actions (`iss` is GitHub's); the rules pin the
//! issuer's keys to it, which is the one thing a production configuration does not do.

use std::path::{Path, PathBuf};

use portcullis_e2e::gateway::{admin_token_config, trusted_publishing_config, Gateway, RegistrySpec};
use portcullis_e2e::oidc::Issuer;
use portcullis_e2e::pypiserver::{self, Pypiserver};
use portcullis_e2e::verdaccio::Verdaccio;
use portcullis_e2e::{fixtures, npm_provenance};
use portcullis_verify::bundle::{Bundle, SignerMaterial};
use portcullis_verify::cert;

/// The audience of the PyPI registry's ID tokens (pypi.org's).
pub const PYPI_AUDIENCE: &str = "pypi";
/// GitHub Actions' token issuer, the `iss` of the CI job's ID tokens.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// The audience the npm CLI asks for: `npm:<registry host>`.
pub const NPM_AUDIENCE: &str = "npm:127.0.0.1";

/// A GitHub Actions workflow identity, as a trusted publisher names it.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// `owner/name`.
    pub repository: String,
    /// The owner's numeric id.
    pub owner_id: String,
    /// The workflow file name (`release.yml`).
    pub workflow: String,
}

impl Workflow {
    /// The workflow that signed the bundle at `path` (JSON), read from its Fulcio certificate:
    /// source repository (.12), owner id (.17) and build config (.18).
    pub fn of_bundle(path: &Path) -> Workflow {
        let json = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let bundle = Bundle::from_json(&json).expect("a Sigstore bundle");
        let SignerMaterial::Certificate { leaf, .. } = bundle.signer else {
            panic!("{}: signed with a key, not a Fulcio certificate", path.display())
        };
        let identity = cert::identity(&cert::parse(&leaf).expect("certificate")).expect("Fulcio identity");
        let repository = identity
            .source_repository_uri
            .as_deref()
            .and_then(|uri| uri.strip_prefix("https://github.com/"))
            .expect("a GitHub source repository")
            .to_owned();
        let workflow = identity
            .build_config_uri
            .as_deref()
            .and_then(|uri| uri.split_once("/.github/workflows/"))
            .and_then(|(_, rest)| rest.split('@').next())
            .expect("a GitHub workflow")
            .to_owned();
        Workflow {
            repository,
            owner_id: identity.source_repository_owner_identifier.expect("an owner id"),
            workflow,
        }
    }

    /// A `[[registries.<registry>.publishers]]` entry for this workflow on GitHub Actions,
    /// `pending` (it may create the projects, which the backends do not have yet).
    fn publisher(&self, registry: &str, id: &str, projects: &[&str]) -> String {
        format!(
            "[[registries.{registry}.publishers]]\nid = \"{id}\"\nissuer = \"github\"\nprojects = {projects:?}\n\
             repository = \"{}\"\nrepository_owner_id = \"{}\"\nworkflow = \"{}\"\npending = true\n\n",
            self.repository, self.owner_id, self.workflow
        )
    }
}

/// The workflow of the demo's own npm packages (no fixture: they are built on the spot).
pub fn widgets_workflow() -> Workflow {
    Workflow {
        repository: "acme/widgets".into(),
        owner_id: "1234".into(),
        workflow: "release.yml".into(),
    }
}

/// Everything the demo runs, stopped when dropped.
pub struct Stack {
    /// The work folder.
    pub work: PathBuf,
    /// The stand-in for GitHub Actions' token issuer.
    pub issuer: Issuer,
    /// The PyPI backend.
    pub pypiserver: Pypiserver,
    /// The npm backend.
    pub verdaccio: Verdaccio,
    /// The gateway.
    pub gateway: Gateway,
    /// Who signed the real PEP 740 attestation.
    pub pypi_signer: Workflow,
    /// Who signed the real npm provenance.
    pub npm_signer: Workflow,
}

impl Stack {
    /// Starts the issuer, both backends and the gateway under `work`.
    pub fn start(work: &Path) -> Stack {
        let pypi_signer = Workflow::of_bundle(
            &fixtures().join("pep740/github-publish-pypi-attestations-0.0.19/bundle.sigstore.json"),
        );
        let npm_signer = Workflow::of_bundle(&npm_provenance::case().join("bundle.sigstore.json"));
        let issuer = Issuer::start(&work.join("issuer"));
        let pypiserver = Pypiserver::start(&work.join("pypiserver"));
        let verdaccio = Verdaccio::start(&work.join("verdaccio"));

        let gw_dir = work.join("gateway");
        std::fs::create_dir_all(&gw_dir).expect("gateway folder");
        let password = gw_dir.join("pypiserver-password");
        std::fs::write(&password, format!("{}\n", pypiserver::PASSWORD)).expect("password file");
        let npm_token = gw_dir.join("verdaccio-token");
        std::fs::write(&npm_token, verdaccio.token(verdaccio.addr())).expect("token file");
        let rules = rules(&issuer, &pypi_signer, &npm_signer);
        let root = fixtures().join("trusted-roots/public-good-production.trusted_root.json");
        let gateway = Gateway::builder()
            .registry(RegistrySpec {
                extra: format!(
                    "path_prefix = \"/pypi\"\nclient_credentials = \"pass\"\n\
                     backend_credentials = {{ kind = \"basic\", username = \"{}\", password_file = {:?} }}\n",
                    pypiserver::USER,
                    password.display().to_string()
                ),
                ..RegistrySpec::new("pypi", "pypi", pypiserver.addr())
            })
            .registry(RegistrySpec {
                extra: format!(
                    "strip_npm_provenance = true\nclient_credentials = \"pass\"\n\
                     backend_credentials = {{ kind = \"bearer\", token_file = {:?} }}\n",
                    npm_token.display().to_string()
                ),
                ..RegistrySpec::new("npm", "npm", verdaccio.addr())
            })
            .rules(&rules)
            .admin_config(&admin_token_config(&gw_dir))
            .config(&format!(
                "{}[provenance]\ntrusted_root = {:?}\n[testing]\nadjustable_clock = true\n",
                trusted_publishing_config(&gw_dir.join("keys"), issuer.ca_file()),
                root.display().to_string()
            ))
            .start(&gw_dir);
        Stack {
            work: work.to_path_buf(),
            issuer,
            pypiserver,
            verdaccio,
            gateway,
            pypi_signer,
            npm_signer,
        }
    }

    /// The claims of an ID token GitHub Actions would issue to `workflow`'s job for `aud`
    /// (signed by the local stand-in, whose keys the rules pin).
    pub fn ci_claims(&self, aud: &str, workflow: &Workflow) -> serde_json::Value {
        let mut claims = self
            .issuer
            .github_claims(aud, &workflow.repository, &workflow.owner_id, &workflow.workflow);
        claims["iss"] = serde_json::Value::from(GITHUB_ISSUER);
        claims
    }

    /// The PyPI upload URL clients are given.
    pub fn pypi_url(&self) -> String {
        format!("{}/pypi/", self.gateway.url())
    }
}

/// The demo's rules: GitHub Actions as the issuer (its keys pinned to the local stand-in),
/// provenance required for the attested projects, the fixtures' workflows as trusted publishers
/// (who may both mint upload tokens and sign provenance), and npm's deletion policy.
fn rules(issuer: &Issuer, pypi_signer: &Workflow, npm_signer: &Workflow) -> String {
    let mut rules = format!(
        r#"# GitHub Actions. The demo pins its keys to the local issuer that stands in for it;
# in production leave jwks_url out and the keys come from GitHub's OIDC discovery.
[issuers.github]
url = "{GITHUB_ISSUER}"
kind = "github"
jwks_url = "{local}/jwks"

[registries.pypi]
audience = "{PYPI_AUDIENCE}"

[[registries.pypi.provenance_rules]]
id = "attested"
names = ["pypi-attestations", "acme-*"]
mode = "required"

[registries.npm]
audience = "{NPM_AUDIENCE}"

[[registries.npm.provenance_rules]]
id = "attested"
names = ["sigstore"]
mode = "required"

# npm's unpublish policy; Verdaccio keeps no maintainers list, so owners are not counted.
[registries.npm.deletion]
window = "72h"
max_dependents = 0
unknown_facts = "ignore"

"#,
        local = issuer.url()
    );
    rules.push_str(&pypi_signer.publisher("pypi", "tob-release", &["pypi-attestations"]));
    rules.push_str(&npm_signer.publisher("npm", "sigstore-js", &["sigstore"]));
    rules.push_str(&widgets_workflow().publisher("npm", "widgets", &["demo-widget", "demo-app"]));
    rules
}
