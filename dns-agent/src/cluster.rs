//! The compact view of the cluster objects DNS records are computed from (snapshot or watchers).
//!
//! Only the fields DNS needs are kept, parsed once when an object arrives: a Service of the API
//! weighs kilobytes as k8s-openapi decodes it, its DNS view tens of bytes. A cluster of 100,000
//! Services and 200,000 endpoint addresses fits in a few tens of megabytes this way.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::records::Port;

/// The label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Namespace and name of a namespaced object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The first key of `namespace` in key order (for range scans over one namespace).
    fn first_of(namespace: &str) -> Self {
        ObjectKey::new(namespace, "")
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An object's labels, in a boxed slice (a `BTreeMap` node alone is half a kilobyte).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(Box<[(Box<str>, Box<str>)]>);

impl Labels {
    pub fn from_map(map: Option<&BTreeMap<String, String>>) -> Self {
        Labels(
            map.into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
    }
}

/// A Namespace as DNS sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceObj {
    pub labels: Labels,
}

impl From<&Namespace> for NamespaceObj {
    fn from(ns: &Namespace) -> Self {
        NamespaceObj {
            labels: Labels::from_map(ns.metadata.labels.as_ref()),
        }
    }
}

/// What a Service's spec makes of it in DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// No usable address (no spec, no or malformed cluster IPs, an ExternalName without a name).
    Ignored,
    /// Cluster IPs (both families, in spec order) and the Service's ports.
    ClusterIp {
        ips: Box<[IpAddr]>,
        ports: Box<[Port]>,
    },
    /// `clusterIP: None`.
    Headless,
    /// An ExternalName service: the lower-case FQDN target.
    ExternalName(Box<str>),
}

/// A Service as DNS sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceObj {
    pub labels: Labels,
    pub shape: Shape,
    pub publish_not_ready: bool,
}

impl From<&Service> for ServiceObj {
    fn from(svc: &Service) -> Self {
        let labels = Labels::from_map(svc.metadata.labels.as_ref());
        let Some(spec) = &svc.spec else {
            return ServiceObj {
                labels,
                shape: Shape::Ignored,
                publish_not_ready: false,
            };
        };
        let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
        let shape = if spec.type_.as_deref() == Some("ExternalName") {
            match spec
                .external_name
                .as_deref()
                .map(|t| t.trim_end_matches('.'))
            {
                // An IP is not a name: CoreDNS serves nothing for it.
                Some(t) if !t.is_empty() && t.parse::<IpAddr>().is_err() => {
                    Shape::ExternalName(format!("{}.", t.to_ascii_lowercase()).into())
                }
                _ => Shape::Ignored,
            }
        } else {
            let cluster_ips: Vec<&str> = match &spec.cluster_ips {
                Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
                _ => spec.cluster_ip.as_deref().into_iter().collect(),
            };
            if cluster_ips.first() == Some(&"None") {
                Shape::Headless
            } else {
                let ips: Box<[IpAddr]> = cluster_ips
                    .iter()
                    .filter_map(|ip| ip.parse().ok())
                    .collect();
                if ips.is_empty() {
                    Shape::Ignored
                } else {
                    let ports = spec
                        .ports
                        .iter()
                        .flatten()
                        .map(|p| Port {
                            name: intern(p.name.as_deref().unwrap_or_default()),
                            protocol: intern(p.protocol.as_deref().unwrap_or("TCP")),
                            port: p.port,
                        })
                        .collect();
                    Shape::ClusterIp { ips, ports }
                }
            }
        };
        ServiceObj {
            labels,
            shape,
            publish_not_ready,
        }
    }
}

/// One endpoint address of an EndpointSlice (32 bytes; the names, when there are any, behind
/// one pointer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointObj {
    pub ip: IpAddr,
    /// `conditions.ready`, absent counting as ready.
    pub ready: bool,
    pub names: Option<Box<EndpointNames>>,
}

impl EndpointObj {
    pub fn hostname(&self) -> Option<&str> {
        self.names.as_ref().and_then(|n| n.hostname.as_deref())
    }

    pub fn pod(&self) -> Option<&str> {
        self.names.as_ref().and_then(|n| n.pod.as_deref())
    }

    pub fn written(&self) -> Option<&str> {
        self.names.as_ref().and_then(|n| n.written.as_deref())
    }
}

/// The names an endpoint address may be known by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointNames {
    /// `hostname`, lower-case, when set and not empty.
    pub hostname: Option<Box<str>>,
    /// `targetRef.name` of a Pod target, lower-case (`endpoint_pod_names`).
    pub pod: Option<Box<str>>,
    /// The dashed form of the address as written, when it differs from the canonical one
    /// (CoreDNS derives the label from the text of the object).
    pub written: Option<Box<str>>,
}

impl EndpointNames {
    /// `None` when there is no name at all.
    pub fn boxed(self) -> Option<Box<EndpointNames>> {
        (self != EndpointNames::default()).then(|| Box::new(self))
    }
}

/// An EndpointSlice as DNS sees it. Slices of type FQDN keep no endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceObj {
    /// The `kubernetes.io/service-name` label.
    pub service: Option<Box<str>>,
    pub endpoints: Box<[EndpointObj]>,
    /// The slice's ports; one port-less entry (`port` -1) when it lists none.
    pub ports: Box<[Port]>,
}

impl From<&EndpointSlice> for SliceObj {
    fn from(slice: &EndpointSlice) -> Self {
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .filter(|s| !s.is_empty())
            .map(|s| s.as_str().into());
        let mut endpoints = Vec::new();
        if slice.address_type == "IPv4" || slice.address_type == "IPv6" {
            for ep in &slice.endpoints {
                let ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
                let hostname = ep
                    .hostname
                    .as_deref()
                    .filter(|h| !h.is_empty())
                    .map(|h| h.to_ascii_lowercase().into());
                let pod = ep
                    .target_ref
                    .as_ref()
                    .filter(|r| r.kind.as_deref().is_none_or(|k| k == "Pod"))
                    .and_then(|r| r.name.as_deref())
                    .filter(|p| !p.is_empty())
                    .map(|p| p.to_ascii_lowercase().into());
                for addr in &ep.addresses {
                    let Ok(ip) = addr.parse::<IpAddr>() else {
                        continue;
                    };
                    let written = crate::records::dashed(addr);
                    let written = (written != crate::records::dashed(&ip.to_string()))
                        .then(|| written.into());
                    let names = EndpointNames {
                        hostname: hostname.clone(),
                        pod: pod.clone(),
                        written,
                    };
                    endpoints.push(EndpointObj {
                        ip,
                        ready,
                        names: names.boxed(),
                    });
                }
            }
        }
        let mut ports: Vec<Port> = slice
            .ports
            .iter()
            .flatten()
            .map(|p| Port {
                name: intern(p.name.as_deref().unwrap_or_default()),
                protocol: intern(p.protocol.as_deref().unwrap_or("TCP")),
                port: p.port.unwrap_or(-1),
            })
            .collect();
        if ports.is_empty() {
            ports.push(Port {
                name: intern(""),
                protocol: intern(""),
                port: -1,
            });
        }
        SliceObj {
            service,
            endpoints: endpoints.into(),
            ports: ports.into(),
        }
    }
}

/// A Pod as DNS sees it (`pods verified`): its addresses, none once it is being deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodObj {
    pub ips: Box<[IpAddr]>,
}

impl From<&Pod> for PodObj {
    fn from(pod: &Pod) -> Self {
        if pod.metadata.deletion_timestamp.is_some() {
            return PodObj::default();
        }
        let Some(status) = &pod.status else {
            return PodObj::default();
        };
        let mut ips: Vec<IpAddr> = status
            .pod_ips
            .iter()
            .flatten()
            .map(|p| p.ip.as_str())
            .chain(status.pod_ip.as_deref())
            .filter_map(|s| s.parse().ok())
            .collect();
        ips.sort_unstable();
        ips.dedup();
        PodObj { ips: ips.into() }
    }
}

/// Every object the records depend on, keyed so that a watcher can replace or delete one.
/// Changed through its methods, which keep the slice index in step.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub namespaces: BTreeMap<String, NamespaceObj>,
    pub services: BTreeMap<ObjectKey, ServiceObj>,
    pub endpoint_slices: BTreeMap<ObjectKey, SliceObj>,
    pub pods: BTreeMap<ObjectKey, PodObj>,
}

impl Cluster {
    /// Number of objects held.
    pub fn len(&self) -> usize {
        self.namespaces.len() + self.services.len() + self.endpoint_slices.len() + self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn insert_namespace(&mut self, name: String, ns: NamespaceObj) {
        self.namespaces.insert(name, ns);
    }

    pub fn remove_namespace(&mut self, name: &str) -> Option<NamespaceObj> {
        self.namespaces.remove(name)
    }

    pub fn insert_service(&mut self, key: ObjectKey, svc: ServiceObj) {
        self.services.insert(key, svc);
    }

    pub fn remove_service(&mut self, key: &ObjectKey) -> Option<ServiceObj> {
        self.services.remove(key)
    }

    /// Stores a slice; returns the one it replaces.
    pub fn insert_slice(&mut self, key: ObjectKey, slice: SliceObj) -> Option<SliceObj> {
        self.endpoint_slices.insert(key, slice)
    }

    pub fn remove_slice(&mut self, key: &ObjectKey) -> Option<SliceObj> {
        self.endpoint_slices.remove(key)
    }

    pub fn insert_pod(&mut self, key: ObjectKey, pod: PodObj) {
        self.pods.insert(key, pod);
    }

    pub fn remove_pod(&mut self, key: &ObjectKey) -> Option<PodObj> {
        self.pods.remove(key)
    }

    /// The slices labelled with the service `key`, in slice-name order: a scan of the
    /// service's namespace (a few microseconds per thousand slices; [`Cluster::slices_by_service`]
    /// groups them all at once).
    pub fn slices_of<'a>(&'a self, key: &'a ObjectKey) -> impl Iterator<Item = &'a SliceObj> + 'a {
        self.endpoint_slices
            .range(ObjectKey::first_of(&key.namespace)..)
            .take_while(move |(k, _)| k.namespace == key.namespace)
            .map(|(_, s)| s)
            .filter(move |s| s.service.as_deref() == Some(key.name.as_str()))
    }

    /// Every slice grouped by the service it is labelled with: (namespace, service) → slices
    /// in slice-name order.
    pub fn slices_by_service(&self) -> HashMap<(&str, &str), Vec<&SliceObj>> {
        let mut out: HashMap<(&str, &str), Vec<&SliceObj>> = HashMap::new();
        for (key, slice) in &self.endpoint_slices {
            if let Some(svc) = slice.service.as_deref() {
                out.entry((key.namespace.as_str(), svc))
                    .or_default()
                    .push(slice);
            }
        }
        out
    }

    /// The services of `namespace`, in name order.
    pub fn services_in<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a ServiceObj)> + 'a {
        self.services
            .range(ObjectKey::first_of(namespace)..)
            .take_while(move |(k, _)| k.namespace == namespace)
    }

    /// The pods of `namespace`.
    pub fn pods_in<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = &'a PodObj> + 'a {
        self.pods
            .range(ObjectKey::first_of(namespace)..)
            .take_while(move |(k, _)| k.namespace == namespace)
            .map(|(_, p)| p)
    }
}

/// Shares equal short strings (port names, protocols) between the objects that repeat them.
/// Past a few thousand distinct strings new ones are no longer kept (no unbounded growth).
pub fn intern(s: &str) -> Arc<str> {
    const MAX_KEPT: usize = 4096;
    static TABLE: OnceLock<Mutex<HashMap<Box<str>, Arc<str>>>> = OnceLock::new();
    let table = TABLE.get_or_init(Default::default);
    let mut table = table.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(shared) = table.get(s) {
        return Arc::clone(shared);
    }
    let shared: Arc<str> = Arc::from(s);
    if table.len() < MAX_KEPT {
        table.insert(s.into(), Arc::clone(&shared));
    }
    shared
}
