//! Table-driven tests of the snapshot loader: accepted shapes and every rejected one.

use super::*;

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n";
const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: demo\nspec:\n  clusterIP: 10.96.10.20\n";
const SLICE: &str = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: IPv4\nmetadata:\n  name: db-1\n  namespace: demo\n  labels:\n    kubernetes.io/service-name: db\nendpoints:\n- addresses: [10.1.2.3]\n";
const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: db-0\n  namespace: demo\nspec:\n  containers: [{name: c, image: i}]\n";

/// Indents every line of `doc` by two spaces so that it can be a `List` item after `- `.
fn item(doc: &str) -> String {
    let mut out = String::new();
    for (i, line) in doc.lines().enumerate() {
        out.push_str(if i == 0 { "- " } else { "  " });
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn list(docs: &[&str]) -> String {
    let mut out =
        "apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n".to_owned();
    for doc in docs {
        out.push_str(&item(doc));
    }
    out
}

/// (namespaces, services, slices, pods) held.
fn counts(l: &Loaded) -> (usize, usize, usize, usize) {
    let c = &l.cluster;
    (
        c.namespaces.len(),
        c.services.len(),
        c.endpoint_slices.len(),
        c.pods.len(),
    )
}

#[test]
fn accepted() {
    struct Case {
        name: &'static str,
        yaml: String,
        counts: (usize, usize, usize, usize),
        warnings: Vec<&'static str>,
    }
    let cases = vec![
        Case { name: "empty file", yaml: String::new(), counts: (0, 0, 0, 0), warnings: vec![] },
        Case {
            name: "one object per kind, multi-document with stray separators",
            yaml: format!("---\n{NS}---\n{SVC}---\n{SLICE}---\n{POD}---\n"),
            counts: (1, 1, 1, 1),
            warnings: vec![],
        },
        Case {
            name: "a List",
            yaml: list(&[NS, SVC, SLICE, POD]),
            counts: (1, 1, 1, 1),
            warnings: vec![],
        },
        Case {
            name: "Lists and single objects mixed, empty List",
            yaml: format!("{}---\n{SVC}---\n{}---\napiVersion: v1\nkind: List\nitems: []\n", list(&[NS]), list(&[SLICE, POD])),
            counts: (1, 1, 1, 1),
            warnings: vec![],
        },
        Case {
            name: "namespace defaults to default",
            yaml: "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: 10.0.0.1\n".into(),
            counts: (0, 1, 0, 0),
            warnings: vec![],
        },
        Case {
            name: "other kinds and versions are skipped with a warning",
            yaml: format!(
                "{SVC}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: coredns\n  namespace: kube-system\n---\n{}",
                list(&["apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\naddressType: IPv4\nmetadata:\n  name: old\n  namespace: demo\nendpoints: []\n"])
            ),
            counts: (0, 1, 0, 0),
            warnings: vec![
                "test.yaml: document 2 (ConfigMap kube-system/coredns): kind not used for DNS records, skipped",
                "test.yaml: document 3 items[0] (EndpointSlice demo/old): apiVersion discovery.k8s.io/v1beta1 not supported (want discovery.k8s.io/v1), skipped",
            ],
        },
        Case {
            name: "a slice without the service-name label is kept, with a warning",
            yaml: "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: IPv4\nmetadata:\n  name: custom\n  namespace: demo\nendpoints: []\n".into(),
            counts: (0, 0, 1, 0),
            warnings: vec![
                "test.yaml: document 1 (EndpointSlice demo/custom): no kubernetes.io/service-name label: not linked to any Service",
            ],
        },
        Case {
            name: "the same name in another kind or namespace is not a duplicate",
            yaml: format!("{SVC}---\n{}", SVC.replace("namespace: demo", "namespace: prod")),
            counts: (0, 2, 0, 0),
            warnings: vec![],
        },
    ];
    for case in cases {
        let loaded =
            parse("test.yaml", &case.yaml).unwrap_or_else(|e| panic!("case {:?}: {e}", case.name));
        assert_eq!(counts(&loaded), case.counts, "case {:?}", case.name);
        assert_eq!(loaded.warnings, case.warnings, "case {:?}", case.name);
    }
}

#[test]
fn typed_objects_keep_their_fields() {
    let loaded = parse("test.yaml", &format!("{SVC}---\n{SLICE}")).expect("parses");
    let svc = &loaded.cluster.services[&ObjectKey::new("demo", "web")];
    match &svc.shape {
        crate::cluster::Shape::ClusterIp { ips, .. } => {
            assert_eq!(
                ips.to_vec(),
                vec!["10.96.10.20".parse::<std::net::IpAddr>().expect("ip")]
            );
        }
        other => panic!("shape {other:?}"),
    }
    let slice = &loaded.cluster.endpoint_slices[&ObjectKey::new("demo", "db-1")];
    assert_eq!(slice.endpoints[0].ip.to_string(), "10.1.2.3");
}

#[test]
fn rejected() {
    struct Case {
        name: &'static str,
        yaml: String,
        err: &'static str,
    }
    let cases = vec![
        Case {
            name: "YAML syntax",
            yaml: format!("{NS}---\nkind: [unclosed\n"),
            err: "test.yaml: document 2: invalid YAML: did not find expected ',' or ']' at line 7 column 1, while parsing a flow sequence at line 6 column 7",
        },
        Case {
            name: "a scalar document",
            yaml: "just text\n".into(),
            err: "test.yaml: document 1: not a Kubernetes object (expected a mapping with apiVersion and kind)",
        },
        Case {
            name: "no kind",
            yaml: "apiVersion: v1\nmetadata:\n  name: x\n".into(),
            err: "test.yaml: document 1: kind is missing",
        },
        Case {
            name: "no apiVersion",
            yaml: "kind: Service\nmetadata:\n  name: x\n".into(),
            err: "test.yaml: document 1: apiVersion is missing",
        },
        Case {
            name: "kind not a string",
            yaml: "apiVersion: v1\nkind: [Service]\n".into(),
            err: "test.yaml: document 1: kind is not a string",
        },
        Case {
            name: "no name",
            yaml: "apiVersion: v1\nkind: Service\nmetadata:\n  namespace: demo\n".into(),
            err: "test.yaml: document 1 (Service): metadata.name is missing",
        },
        Case {
            name: "List items not a sequence",
            yaml: "apiVersion: v1\nkind: List\nitems: {a: 1}\n".into(),
            err: "test.yaml: document 1: List: items is not a sequence",
        },
        Case {
            name: "List in a List",
            yaml: list(&[NS, "apiVersion: v1\nkind: List\nitems: []\n"]),
            err: "test.yaml: document 1 items[1]: a List inside a List is not supported",
        },
        Case {
            name: "malformed clusterIP, inside a List",
            yaml: list(&[NS, &SVC.replace("10.96.10.20", "10.96.10.300")]),
            err: "test.yaml: document 1 items[1] (Service demo/web): spec.clusterIP \"10.96.10.300\" is not an IP address, \"None\" or empty",
        },
        Case {
            name: "malformed clusterIPs entry",
            yaml: SVC.replace("clusterIP: 10.96.10.20", "clusterIPs: [10.96.10.20, 'fd00::zz']"),
            err: "test.yaml: document 1 (Service demo/web): spec.clusterIPs[1] \"fd00::zz\" is not an IP address, \"None\" or empty",
        },
        Case {
            name: "clusterIPs disagreeing with clusterIP",
            yaml: SVC.replace("clusterIP: 10.96.10.20", "clusterIP: 10.96.10.20\n  clusterIPs: [10.96.10.21]"),
            err: "test.yaml: document 1 (Service demo/web): spec.clusterIPs[0] \"10.96.10.21\" differs from spec.clusterIP \"10.96.10.20\"",
        },
        Case {
            name: "wrong field type, with its path",
            yaml: SVC.replace("clusterIP: 10.96.10.20", "ports:\n  - port: http"),
            err: "test.yaml: document 1 (Service demo/web): spec.ports[0].port: invalid type: string \"http\", expected i32",
        },
        Case {
            name: "service name not a DNS-1035 label",
            yaml: SVC.replace("name: web", "name: 9web"),
            err: "test.yaml: document 1 (Service demo/9web): metadata.name \"9web\" must start with a letter",
        },
        Case {
            name: "service name with capitals",
            yaml: SVC.replace("name: web", "name: Web"),
            err: "test.yaml: document 1 (Service demo/Web): metadata.name \"Web\" is not a DNS label (1-63 lower-case letters, digits or '-', starting and ending with a letter or digit)",
        },
        Case {
            name: "namespace with a dot",
            yaml: SVC.replace("namespace: demo", "namespace: de.mo"),
            err: "test.yaml: document 1 (Service de.mo/web): metadata.namespace \"de.mo\" is not a DNS label (1-63 lower-case letters, digits or '-', starting and ending with a letter or digit)",
        },
        Case {
            name: "Namespace name",
            yaml: NS.replace("name: demo", "name: demo-"),
            err: "test.yaml: document 1 (Namespace demo-): metadata.name \"demo-\" is not a DNS label (1-63 lower-case letters, digits or '-', starting and ending with a letter or digit)",
        },
        Case {
            name: "endpoint address not IPv4",
            yaml: format!("{NS}---\n{}", SLICE.replace("10.1.2.3", "10.1.2")),
            err: "test.yaml: document 2 (EndpointSlice demo/db-1): endpoints[0].addresses[0] \"10.1.2\" is not an IPv4 address",
        },
        Case {
            name: "unknown addressType",
            yaml: SLICE.replace("addressType: IPv4", "addressType: IPv5"),
            err: "test.yaml: document 1 (EndpointSlice demo/db-1): addressType \"IPv5\" is not one of \"IPv4\", \"IPv6\", \"FQDN\"",
        },
        Case {
            name: "EndpointSlice without addressType",
            yaml: SLICE.replace("addressType: IPv4\n", ""),
            err: "test.yaml: document 1 (EndpointSlice demo/db-1): addressType is missing",
        },
        Case {
            name: "duplicate across documents",
            yaml: format!("{}---\n{SVC}", list(&[NS, SVC])),
            err: "test.yaml: document 2 (Service demo/web): duplicate object, first defined in document 1 items[1] (Service demo/web)",
        },
    ];
    for case in cases {
        let err = match parse("test.yaml", &case.yaml) {
            Ok(_) => panic!("case {:?}: accepted", case.name),
            Err(e) => e.to_string(),
        };
        assert!(
            !err.contains('\n'),
            "case {:?}: one line, got {err:?}",
            case.name
        );
        assert!(
            err.starts_with(case.err),
            "case {:?}:\n got {err:?}\nwant {:?}",
            case.name,
            case.err
        );
    }
}

#[test]
fn embedded_sample_loads_without_warnings() {
    let loaded = load(&SnapshotSource::Embedded).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(counts(&loaded), (3, 8, 8, 2));
    assert_eq!(loaded.warnings, Vec::<String>::new());
}

#[test]
fn missing_file_names_the_path() {
    let path = PathBuf::from("/nonexistent/snap.yaml");
    let err = load(&SnapshotSource::File(path))
        .expect_err("no such file")
        .to_string();
    assert!(
        err.starts_with("cannot read snapshot /nonexistent/snap.yaml: No such file"),
        "{err}"
    );
}
