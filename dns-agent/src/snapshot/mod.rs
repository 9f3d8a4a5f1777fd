//! Loads cluster objects from `kubectl get -o yaml` output (multi-document YAML and/or `List`).

mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::Value;

use crate::cli::SnapshotSource;
use crate::cluster::{Cluster, NamespaceObj, ObjectKey, PodObj, ServiceObj, SliceObj};

pub use validate::{check_endpoint_slice, check_service, SERVICE_NAME_LABEL};

/// The sample snapshot served when no `--snapshot` is given.
pub const EMBEDDED: &str = include_str!("../../snapshots/sample.yaml");
/// How error messages name [`EMBEDDED`].
pub const EMBEDDED_ORIGIN: &str = "<embedded snapshots/sample.yaml>";

/// Where in a snapshot an object is: 1-based document, index in a `List`, and the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub document: usize,
    pub item: Option<usize>,
    /// `Kind namespace/name` (or `Kind name` for cluster objects) once known.
    pub object: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.document)?;
        if let Some(i) = self.item {
            write!(f, " items[{i}]")?;
        }
        if let Some(o) = &self.object {
            write!(f, " ({o})")?;
        }
        Ok(())
    }
}

/// Why a snapshot cannot be used. Every message is one line naming the file and the object.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read snapshot {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: document {document}: invalid YAML: {message}")]
    Yaml {
        origin: String,
        document: usize,
        message: String,
    },
    #[error("{origin}: {at}: {problem}")]
    Object {
        origin: String,
        at: Location,
        problem: String,
    },
}

/// A loaded snapshot: the objects, and what was skipped (already logged as warnings).
#[derive(Debug, Default)]
pub struct Loaded {
    pub cluster: Cluster,
    pub warnings: Vec<String>,
}

/// Reads and parses the snapshot `source` names.
pub fn load(source: &SnapshotSource) -> Result<Loaded, SnapshotError> {
    match source {
        SnapshotSource::Embedded => parse(EMBEDDED_ORIGIN, EMBEDDED),
        SnapshotSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| SnapshotError::Read {
                path: path.clone(),
                source,
            })?;
            parse(&path.display().to_string(), &text)
        }
        SnapshotSource::Text { origin, yaml } => parse(origin, yaml),
    }
}

/// Parses `text` (named `origin` in messages). Unknown kinds are skipped with a warning;
/// malformed objects and duplicates are errors.
pub fn parse(origin: &str, text: &str) -> Result<Loaded, SnapshotError> {
    let mut loader = Loader {
        origin,
        loaded: Loaded::default(),
        seen: BTreeMap::new(),
    };
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value = Value::deserialize(doc).map_err(|e| SnapshotError::Yaml {
            origin: origin.to_owned(),
            document,
            message: e.to_string(),
        })?;
        loader.document(document, value)?;
    }
    for w in &loader.loaded.warnings {
        log::warn!("{w}");
    }
    Ok(loader.loaded)
}

struct Loader<'a> {
    origin: &'a str,
    loaded: Loaded,
    /// Every object added, with where it was first seen (to name both places of a duplicate).
    seen: BTreeMap<String, Location>,
}

impl Loader<'_> {
    fn error(&self, at: Location, problem: impl Into<String>) -> SnapshotError {
        SnapshotError::Object {
            origin: self.origin.to_owned(),
            at,
            problem: problem.into(),
        }
    }

    fn document(&mut self, document: usize, value: Value) -> Result<(), SnapshotError> {
        let at = Location {
            document,
            item: None,
            object: None,
        };
        if value.is_null() {
            return Ok(()); // an empty document, e.g. after a trailing `---`
        }
        let (kind, api_version) = self.type_of(&at, &value)?;
        if kind != "List" {
            return self.object(at, kind, api_version, value);
        }
        let items = match value.get("items") {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Sequence(items)) => items.clone(),
            Some(_) => return Err(self.error(at, "List: items is not a sequence")),
        };
        for (i, item) in items.into_iter().enumerate() {
            let at = Location {
                document,
                item: Some(i),
                object: None,
            };
            let (kind, api_version) = self.type_of(&at, &item)?;
            if kind == "List" {
                return Err(self.error(at, "a List inside a List is not supported"));
            }
            self.object(at, kind, api_version, item)?;
        }
        Ok(())
    }

    fn type_of(&self, at: &Location, value: &Value) -> Result<(String, String), SnapshotError> {
        if !value.is_mapping() {
            return Err(self.error(
                at.clone(),
                "not a Kubernetes object (expected a mapping with apiVersion and kind)",
            ));
        }
        let field = |name: &str| match value.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                Err(self.error(at.clone(), format!("{name} is missing")))
            }
            Some(_) => Err(self.error(at.clone(), format!("{name} is not a string"))),
        };
        Ok((field("kind")?, field("apiVersion")?))
    }

    fn object(
        &mut self,
        mut at: Location,
        kind: String,
        api_version: String,
        value: Value,
    ) -> Result<(), SnapshotError> {
        let name = match value.get("metadata").and_then(|m| m.get("name")) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                at.object = Some(kind);
                return Err(self.error(at, "metadata.name is missing"));
            }
        };
        let namespaced = kind != "Namespace";
        let namespace = match value.get("metadata").and_then(|m| m.get("namespace")) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => "default".to_owned(), // what kubectl assumes for a namespaced object
        };
        let key = ObjectKey::new(namespace, name);
        let object = if namespaced {
            format!("{kind} {key}")
        } else {
            format!("{kind} {}", key.name)
        };
        at.object = Some(object.clone());

        let expected = match kind.as_str() {
            "Namespace" | "Service" | "Pod" => "v1",
            "EndpointSlice" => "discovery.k8s.io/v1",
            _ => {
                self.warn(&at, "kind not used for DNS records, skipped");
                return Ok(());
            }
        };
        if api_version != expected {
            self.warn(
                &at,
                &format!("apiVersion {api_version} not supported (want {expected}), skipped"),
            );
            return Ok(());
        }
        if let Some(first) = self.seen.get(&object) {
            return Err(self.error(
                at.clone(),
                format!("duplicate object, first defined in {first}"),
            ));
        }
        if namespaced {
            validate::check_dns1123_label("metadata.namespace", &key.namespace)
                .map_err(|p| self.error(at.clone(), p))?;
        }
        match kind.as_str() {
            "Namespace" => {
                validate::check_dns1123_label("metadata.name", &key.name)
                    .map_err(|p| self.error(at.clone(), p))?;
                let ns: Namespace = self.typed(&at, value)?;
                self.loaded
                    .cluster
                    .insert_namespace(key.name, NamespaceObj::from(&ns));
            }
            "Service" => {
                validate::check_dns1035_label("metadata.name", &key.name)
                    .map_err(|p| self.error(at.clone(), p))?;
                let svc: Service = self.typed(&at, value)?;
                validate::check_service(&svc).map_err(|p| self.error(at.clone(), p))?;
                self.loaded
                    .cluster
                    .insert_service(key, ServiceObj::from(&svc));
            }
            "EndpointSlice" => {
                let slice: EndpointSlice = self.typed(&at, value)?;
                validate::check_endpoint_slice(&slice).map_err(|p| self.error(at.clone(), p))?;
                let linked = slice
                    .metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key(SERVICE_NAME_LABEL));
                if !linked {
                    self.warn(
                        &at,
                        &format!("no {SERVICE_NAME_LABEL} label: not linked to any Service"),
                    );
                }
                self.loaded
                    .cluster
                    .insert_slice(key, SliceObj::from(&slice));
            }
            _ => {
                let pod: Pod = self.typed(&at, value)?;
                self.loaded.cluster.insert_pod(key, PodObj::from(&pod));
            }
        }
        self.seen.insert(object, at);
        Ok(())
    }

    fn typed<T: DeserializeOwned>(&self, at: &Location, value: Value) -> Result<T, SnapshotError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let problem = if path == "." {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            };
            self.error(at.clone(), problem)
        })
    }

    fn warn(&mut self, at: &Location, what: &str) {
        self.loaded
            .warnings
            .push(format!("{}: {at}: {what}", self.origin));
    }
}

#[cfg(test)]
mod tests;
