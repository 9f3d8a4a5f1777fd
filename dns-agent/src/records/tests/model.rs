//! Tests of the full record model: every record type, every option, the answer to a question.

use super::*;

const Q: &str = "<q>";

/// Presentation form of a model record; the question's own name shows as `<q>`.
fn show(rr: &Rr) -> String {
    let owner = rr.owner.as_deref().unwrap_or(Q);
    let data = match &rr.data {
        RData::A(ip) => format!("A {ip}"),
        RData::Aaaa(ip) => format!("AAAA {ip}"),
        RData::Cname(t) => format!("CNAME {t}"),
        RData::Ns(t) => format!("NS {t}"),
        RData::Ptr(t) => format!("PTR {t}"),
        RData::Srv {
            priority,
            weight,
            port,
            target,
        } => format!("SRV {priority} {weight} {port} {target}"),
        RData::Txt(t) => format!("TXT \"{t}\""),
        RData::Soa(z) => format!("SOA {z}"),
    };
    format!("{owner} {} {data}", rr.ttl)
}

/// (rcode, answers, additional) of a question; `None` when it is not ours.
fn ask(records: &Records, name: &str, qtype: u16) -> Option<(Rcode, Vec<String>, Vec<String>)> {
    match records.resolve(name, qtype) {
        Outcome::NotOurs => None,
        Outcome::Answer(r) => Some((
            r.rcode,
            r.answers.iter().map(show).collect(),
            r.additional.iter().map(show).collect(),
        )),
    }
}

fn rcode(records: &Records, name: &str, qtype: u16) -> Option<Rcode> {
    ask(records, name, qtype).map(|r| r.0)
}

fn answers(records: &Records, name: &str, qtype: u16) -> Vec<String> {
    ask(records, name, qtype)
        .unwrap_or_else(|| panic!("{name} is not ours"))
        .1
}

fn ns(name: &str, labels: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\n"
    )
}

fn svc_labels(ns: &str, name: &str, labels: &str, spec: &str) -> String {
    format!("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{{labels}}}\nspec:\n{spec}\n")
}

fn slice_ports(
    ns: &str,
    name: &str,
    service: &str,
    address_type: &str,
    ports: &str,
    endpoints: &str,
) -> String {
    format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: {address_type}\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    kubernetes.io/service-name: {service}\nports: {ports}\nendpoints:\n{endpoints}\n"
    )
}

fn pod(ns: &str, name: &str, ip: &str) -> String {
    format!("---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\nstatus:\n  podIP: {ip}\n  podIPs: [{{ip: {ip}}}]\n")
}

const DUAL: &str = "  clusterIP: 10.96.0.7\n  clusterIPs: [10.96.0.7, 'fd00::7']\n  ipFamilies: [IPv4, IPv6]\n  ports:\n  - {name: http, port: 80, protocol: TCP}\n  - {name: dns, port: 53, protocol: UDP}";

fn dual() -> String {
    svc("demo", "dual", DUAL)
}

fn headless() -> String {
    svc("demo", "hl", "  clusterIP: None")
        + &slice_ports(
            "demo",
            "hl-a",
            "hl",
            "IPv4",
            "[{name: http, port: 8080, protocol: TCP}]",
            "- addresses: [10.1.0.1]\n  hostname: web-0\n- addresses: [10.1.0.2]\n  targetRef: {kind: Pod, name: hl-pod-2}\n- addresses: [10.1.0.3]\n  conditions: {ready: false}",
        )
        + &slice_ports(
            "demo",
            "hl-b",
            "hl",
            "IPv6",
            "[{name: http, port: 8080, protocol: TCP}]",
            "- addresses: ['fd00::1:5']",
        )
}

#[test]
fn cluster_ip_families_and_nodata() {
    let r = records_of(&dual());
    let name = "dual.demo.svc.cluster.local.";
    assert_eq!(answers(&r, name, qtype::A), ["<q> 5 A 10.96.0.7"]);
    assert_eq!(answers(&r, name, qtype::AAAA), ["<q> 5 AAAA fd00::7"]);
    assert_eq!(
        r.aaaa_map()[name],
        (5, vec!["fd00::7".parse::<Ipv6Addr>().expect("v6")])
    );
    let v6only = records_of(&svc(
        "demo",
        "v6",
        "  clusterIP: fd00::1\n  clusterIPs: [fd00::1]",
    ));
    let q = "v6.demo.svc.cluster.local.";
    assert_eq!(
        ask(&v6only, q, qtype::A),
        Some((Rcode::NoError, vec![], vec![]))
    );
    assert_eq!(answers(&v6only, q, qtype::AAAA), ["<q> 5 AAAA fd00::1"]);
}

#[test]
fn cluster_ip_srv_weights_and_additional() {
    let r = records_of(&dual());
    // Bare name: 2 ports x 2 IPs = 4 entries → weight 25; one record per (target, port).
    let (rc, ans, add) = ask(&r, "dual.demo.svc.cluster.local.", qtype::SRV).expect("ours");
    assert_eq!(rc, Rcode::NoError);
    assert_eq!(
        ans,
        [
            "<q> 5 SRV 0 25 80 dual.demo.svc.cluster.local.",
            "<q> 5 SRV 0 25 53 dual.demo.svc.cluster.local."
        ]
    );
    assert_eq!(
        add,
        [
            "dual.demo.svc.cluster.local. 5 A 10.96.0.7",
            "dual.demo.svc.cluster.local. 5 AAAA fd00::7"
        ]
    );
    // Named port: 1 port x 2 IPs → weight 50.
    let (_, ans, add) =
        ask(&r, "_http._tcp.dual.demo.svc.cluster.local.", qtype::SRV).expect("ours");
    assert_eq!(ans, ["<q> 5 SRV 0 50 80 dual.demo.svc.cluster.local."]);
    assert_eq!(add.len(), 2);
    // Wrong protocol, unknown port: NXDOMAIN; A at an SRV name: NODATA.
    assert_eq!(
        rcode(&r, "_http._udp.dual.demo.svc.cluster.local.", qtype::SRV),
        Some(Rcode::NxDomain)
    );
    assert_eq!(
        rcode(&r, "_ftp._tcp.dual.demo.svc.cluster.local.", qtype::SRV),
        Some(Rcode::NxDomain)
    );
    assert_eq!(
        ask(&r, "_dns._udp.dual.demo.svc.cluster.local.", qtype::A),
        Some((Rcode::NoError, vec![], vec![]))
    );
}

#[test]
fn headless_endpoints_names_and_srv() {
    let r = records_of(&headless());
    let name = "hl.demo.svc.cluster.local.";
    assert_eq!(
        answers(&r, name, qtype::A),
        ["<q> 5 A 10.1.0.1", "<q> 5 A 10.1.0.2"]
    );
    assert_eq!(answers(&r, name, qtype::AAAA), ["<q> 5 AAAA fd00::1:5"]);
    assert_eq!(
        answers(&r, "web-0.hl.demo.svc.cluster.local.", qtype::A),
        ["<q> 5 A 10.1.0.1"]
    );
    assert_eq!(
        answers(&r, "10-1-0-2.hl.demo.svc.cluster.local.", qtype::A),
        ["<q> 5 A 10.1.0.2"]
    );
    assert_eq!(
        answers(&r, "fd00--1-5.hl.demo.svc.cluster.local.", qtype::AAAA),
        ["<q> 5 AAAA fd00::1:5"]
    );
    assert_eq!(
        rcode(&r, "10-1-0-3.hl.demo.svc.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
    assert_eq!(
        rcode(&r, "hl-pod-2.hl.demo.svc.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
    // The kernel's map carries the endpoint names too.
    assert!(r.a_map().contains_key("web-0.hl.demo.svc.cluster.local."));
    // 3 endpoints x 1 port → weight 33, one record per endpoint.
    let (_, ans, add) = ask(&r, "_http._tcp.hl.demo.svc.cluster.local.", qtype::SRV).expect("ours");
    assert_eq!(
        ans,
        [
            "<q> 5 SRV 0 33 8080 web-0.hl.demo.svc.cluster.local.",
            "<q> 5 SRV 0 33 8080 10-1-0-2.hl.demo.svc.cluster.local.",
            "<q> 5 SRV 0 33 8080 fd00--1-5.hl.demo.svc.cluster.local."
        ]
    );
    assert_eq!(ans.len(), 3);
    assert!(add.contains(&"web-0.hl.demo.svc.cluster.local. 5 A 10.1.0.1".to_owned()));
    assert!(add.contains(&"fd00--1-5.hl.demo.svc.cluster.local. 5 AAAA fd00::1:5".to_owned()));
    // With endpoint_pod_names the pod name replaces the dashed IP (a hostname still wins).
    let mut s = settings();
    s.endpoint_pod_names = true;
    let r = records_with(&headless(), &s);
    assert_eq!(
        answers(&r, "hl-pod-2.hl.demo.svc.cluster.local.", qtype::A),
        ["<q> 5 A 10.1.0.2"]
    );
    assert_eq!(
        answers(&r, "web-0.hl.demo.svc.cluster.local.", qtype::A),
        ["<q> 5 A 10.1.0.1"]
    );
    assert_eq!(
        rcode(&r, "10-1-0-2.hl.demo.svc.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
}

#[test]
fn publish_not_ready_addresses() {
    let yaml = svc(
        "demo",
        "pn",
        "  clusterIP: None\n  publishNotReadyAddresses: true",
    ) + &slice(
        "demo",
        "pn-1",
        "pn",
        "IPv4",
        "- addresses: [10.5.0.1]\n  conditions: {ready: false}",
    );
    let r = records_of(&yaml);
    assert_eq!(
        answers(&r, "pn.demo.svc.cluster.local.", qtype::A),
        ["<q> 5 A 10.5.0.1"]
    );
}

#[test]
fn external_name_cname_and_chase() {
    let yaml = svc(
        "demo",
        "out",
        "  type: ExternalName\n  externalName: www.Example.com",
    ) + &svc(
        "demo",
        "in",
        "  type: ExternalName\n  externalName: dual.demo.svc.cluster.local",
    ) + &svc(
        "demo",
        "ip",
        "  type: ExternalName\n  externalName: 1.2.3.4",
    ) + &dual();
    let r = records_of(&yaml);
    assert_eq!(
        answers(&r, "out.demo.svc.cluster.local.", qtype::A),
        ["<q> 5 CNAME www.example.com."]
    );
    assert_eq!(
        answers(&r, "out.demo.svc.cluster.local.", qtype::CNAME),
        ["<q> 5 CNAME www.example.com."]
    );
    assert_eq!(
        answers(&r, "in.demo.svc.cluster.local.", qtype::A),
        [
            "<q> 5 CNAME dual.demo.svc.cluster.local.",
            "dual.demo.svc.cluster.local. 5 A 10.96.0.7"
        ]
    );
    assert_eq!(
        answers(&r, "in.demo.svc.cluster.local.", qtype::AAAA),
        [
            "<q> 5 CNAME dual.demo.svc.cluster.local.",
            "dual.demo.svc.cluster.local. 5 AAAA fd00::7"
        ]
    );
    assert_eq!(
        rcode(&r, "ip.demo.svc.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
}

#[test]
fn ptr_records() {
    let r = records_of(&(dual() + &headless()));
    assert_eq!(
        answers(&r, "7.0.96.10.in-addr.arpa.", qtype::PTR),
        ["<q> 5 PTR dual.demo.svc.cluster.local."]
    );
    assert_eq!(
        answers(&r, "1.0.1.10.in-addr.arpa.", qtype::PTR),
        ["<q> 5 PTR web-0.hl.demo.svc.cluster.local."]
    );
    let v6 = "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
    assert_eq!(
        answers(&r, v6, qtype::PTR),
        ["<q> 5 PTR dual.demo.svc.cluster.local."]
    );
    // Unknown addresses fall through (to the rest of the chain) by default…
    assert_eq!(rcode(&r, "9.9.9.9.in-addr.arpa.", qtype::PTR), None);
    // …and are NXDOMAIN without fallthrough.
    let mut s = settings();
    s.fallthrough = None;
    let r = records_with(&dual(), &s);
    assert_eq!(
        rcode(&r, "9.9.9.9.in-addr.arpa.", qtype::PTR),
        Some(Rcode::NxDomain)
    );
    assert_eq!(
        rcode(&r, "7.0.96.10.in-addr.arpa.", qtype::A),
        Some(Rcode::NoError)
    );
}

#[test]
fn pod_modes() {
    let yaml = ns("demo", "") + &pod("demo", "p", "10.244.0.9");
    let mut s = settings();
    let name = "10-244-0-9.demo.pod.cluster.local.";
    let r = records_with(&yaml, &s);
    assert_eq!(rcode(&r, name, qtype::A), Some(Rcode::NxDomain), "disabled");
    s.pods = PodMode::Insecure;
    let r = records_with(&yaml, &s);
    assert_eq!(answers(&r, name, qtype::A), ["<q> 5 A 10.244.0.9"]);
    assert_eq!(
        answers(&r, "10-9-9-9.demo.pod.cluster.local.", qtype::A),
        ["<q> 5 A 10.9.9.9"]
    );
    assert_eq!(
        answers(&r, "fd00--9.demo.pod.cluster.local.", qtype::AAAA),
        ["<q> 5 AAAA fd00::9"]
    );
    assert_eq!(
        rcode(&r, "10-9-9-9.nons.pod.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
    assert_eq!(
        rcode(&r, "bogus.demo.pod.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
    assert_eq!(
        rcode(&r, "demo.pod.cluster.local.", qtype::A),
        Some(Rcode::NoError)
    );
    s.pods = PodMode::Verified;
    let r = records_with(&yaml, &s);
    assert_eq!(answers(&r, name, qtype::A), ["<q> 5 A 10.244.0.9"]);
    assert_eq!(
        rcode(&r, "10-9-9-9.demo.pod.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
}

#[test]
fn apex_version_and_glue() {
    let yaml = svc("kube-system", "kube-dns", "  clusterIP: 10.96.0.10");
    let r = records_of(&yaml);
    let (_, ans, add) = ask(&r, "cluster.local.", qtype::NS).expect("ours");
    assert_eq!(ans, ["<q> 5 NS ns.dns.cluster.local."]);
    assert_eq!(add, ["ns.dns.cluster.local. 5 A 10.96.0.10"]);
    assert_eq!(
        answers(&r, "ns.dns.cluster.local.", qtype::A),
        ["<q> 5 A 10.96.0.10"]
    );
    assert_eq!(
        answers(&r, "dns-version.cluster.local.", qtype::TXT),
        ["<q> 5 TXT \"1.1.0\""]
    );
    assert_eq!(
        rcode(&r, "dns.cluster.local.", qtype::A),
        Some(Rcode::NoError)
    );
    assert_eq!(
        rcode(&r, "x.dns.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
    // Without kube-dns the configured service IPs are the glue.
    let mut s = settings();
    s.dns_ips = vec!["169.254.20.10".parse().expect("ip")];
    let r = records_with("", &s);
    assert_eq!(
        answers(&r, "ns.dns.cluster.local.", qtype::A),
        ["<q> 5 A 169.254.20.10"]
    );
}

#[test]
fn settings_ttl_and_zones() {
    assert_eq!(Settings::default().ttl, 5);
    let mut s = settings();
    s.ttl = 3600;
    assert_eq!(s.validate(), Ok(()));
    s.ttl = 3601;
    assert_eq!(s.validate(), Err(SettingsError::Ttl(3601)));
    s.ttl = 0;
    let r = records_with(&dual(), &s);
    assert_eq!(
        answers(&r, "dual.demo.svc.cluster.local.", qtype::A),
        ["<q> 0 A 10.96.0.7"]
    );
    let mut s = settings();
    s.ttl = 1000;
    let r = records_with("", &s);
    assert_eq!(r.soa_ttl(), 300, "the SOA's own TTL is capped at 300");
    let s = Settings {
        zones: vec!["cluster.local.".into(), "example.org.".into()],
        ..settings()
    };
    assert_eq!(s.validate(), Ok(()));
    let r = records_with(&dual(), &s);
    assert_eq!(
        answers(&r, "dual.demo.svc.example.org.", qtype::A),
        ["<q> 5 A 10.96.0.7"]
    );
    assert_eq!(
        rcode(&r, "9.9.9.9.in-addr.arpa.", qtype::PTR),
        None,
        "no reverse zone"
    );
    let bad = Settings {
        zones: vec!["Cluster Local".into()],
        ..settings()
    };
    assert!(matches!(bad.validate(), Err(SettingsError::Zone(_))));
    assert_eq!(
        Settings {
            zones: vec![],
            ..settings()
        }
        .validate(),
        Err(SettingsError::NoZone)
    );
    assert_eq!("verified".parse::<PodMode>(), Ok(PodMode::Verified));
    assert!("sometimes".parse::<PodMode>().is_err());
}

#[test]
fn settings_namespaces() {
    let yaml = dual() + &svc("other", "web", "  clusterIP: 10.96.0.8");
    let mut s = settings();
    s.namespaces = ["demo".to_owned()].into();
    let r = records_with(&yaml, &s);
    assert_eq!(
        rcode(&r, "dual.demo.svc.cluster.local.", qtype::A),
        Some(Rcode::NoError)
    );
    assert_eq!(
        rcode(&r, "web.other.svc.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
    assert_eq!(
        rcode(&r, "other.svc.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
    assert!(!r
        .ptr
        .contains_key(&"10.96.0.8".parse::<IpAddr>().expect("ip")));
}

#[test]
fn settings_label_selectors() {
    let sel: LabelSelector = "app=web, tier in (front,back), !legacy, env != prod, team"
        .parse()
        .expect("selector");
    let labels = |pairs: &[(&str, &str)]| -> crate::cluster::Labels {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        crate::cluster::Labels::from_map(Some(&map))
    };
    assert!(sel.matches(&labels(&[("app", "web"), ("tier", "front"), ("team", "x")])));
    assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "mid"), ("team", "x")])));
    assert!(!sel.matches(&labels(&[
        ("app", "web"),
        ("tier", "back"),
        ("team", "x"),
        ("legacy", "1")
    ])));
    assert!(!sel.matches(&labels(&[
        ("app", "web"),
        ("tier", "back"),
        ("team", "x"),
        ("env", "prod")
    ])));
    assert!(!sel.matches(&crate::cluster::Labels::default()));
    let notin: LabelSelector = "env notin (prod)".parse().expect("selector");
    assert!(notin.matches(&crate::cluster::Labels::default()));
    assert!("app=,".parse::<LabelSelector>().is_err());
    assert!("tier in front".parse::<LabelSelector>().is_err());

    let yaml = svc_labels("demo", "yes", "app: web", "  clusterIP: 10.96.1.1")
        + &svc_labels("demo", "no", "app: db", "  clusterIP: 10.96.1.2");
    let mut s = settings();
    s.labels = Some("app=web".parse().expect("selector"));
    let r = records_with(&yaml, &s);
    assert_eq!(
        rcode(&r, "yes.demo.svc.cluster.local.", qtype::A),
        Some(Rcode::NoError)
    );
    assert_eq!(
        rcode(&r, "no.demo.svc.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );

    let yaml = ns("shown", "dns: on")
        + &ns("hidden", "")
        + &svc("shown", "a", "  clusterIP: 10.96.2.1")
        + &svc("hidden", "b", "  clusterIP: 10.96.2.2");
    let mut s = settings();
    s.namespace_labels = Some("dns=on".parse().expect("selector"));
    let r = records_with(&yaml, &s);
    assert_eq!(
        rcode(&r, "a.shown.svc.cluster.local.", qtype::A),
        Some(Rcode::NoError)
    );
    assert_eq!(
        rcode(&r, "b.hidden.svc.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
    assert_eq!(
        rcode(&r, "hidden.svc.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
}

#[test]
fn settings_fallthrough() {
    let mut s = settings();
    s.fallthrough = Some(vec![]);
    let r = records_with(&dual(), &s);
    assert_eq!(rcode(&r, "nope.demo.svc.cluster.local.", qtype::A), None);
    assert_eq!(
        rcode(&r, "dual.demo.svc.cluster.local.", qtype::TXT),
        Some(Rcode::NoError)
    );
    s.fallthrough = Some(vec!["demo.svc.cluster.local.".into()]);
    let r = records_with(&dual(), &s);
    assert_eq!(rcode(&r, "nope.demo.svc.cluster.local.", qtype::A), None);
    assert_eq!(
        rcode(&r, "nope.other.svc.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
}

#[test]
fn settings_ignore_empty_service_and_noendpoints() {
    let yaml = dual()
        + &svc("demo", "full", "  clusterIP: 10.96.3.1")
        + &slice("demo", "full-1", "full", "IPv4", "- addresses: [10.6.0.1]")
        + &headless();
    let mut s = settings();
    s.ignore_empty_service = true;
    let r = records_with(&yaml, &s);
    assert_eq!(
        rcode(&r, "dual.demo.svc.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
    assert_eq!(
        rcode(&r, "full.demo.svc.cluster.local.", qtype::A),
        Some(Rcode::NoError)
    );
    assert_eq!(
        rcode(&r, "hl.demo.svc.cluster.local.", qtype::A),
        Some(Rcode::NoError)
    );
    let mut s = settings();
    s.noendpoints = true;
    let r = records_with(&yaml, &s);
    assert_eq!(
        rcode(&r, "dual.demo.svc.cluster.local.", qtype::A),
        Some(Rcode::NoError)
    );
    assert_eq!(
        rcode(&r, "hl.demo.svc.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
    assert_eq!(
        rcode(&r, "10-6-0-1.full.demo.svc.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
    let r = records_with(&yaml, &settings());
    assert_eq!(
        answers(&r, "10-6-0-1.full.demo.svc.cluster.local.", qtype::A),
        ["<q> 5 A 10.6.0.1"],
        "endpoint names of ClusterIP services, as CoreDNS serves them"
    );
}

#[test]
fn unsynced_turns_nxdomain_into_servfail() {
    let mut r = records_of(&dual());
    r.synced = false;
    assert_eq!(
        rcode(&r, "nope.demo.svc.cluster.local.", qtype::A),
        Some(Rcode::ServFail)
    );
    assert_eq!(
        rcode(&r, "dual.demo.svc.cluster.local.", qtype::A),
        Some(Rcode::NoError)
    );
    assert_eq!(
        rcode(&r, "dual.demo.svc.cluster.local.", qtype::TXT),
        Some(Rcode::NoError)
    );
    let empty = Records::unsynced(&settings(), 1);
    assert!(!empty.synced);
    assert_eq!(
        rcode(&empty, "x.default.svc.cluster.local.", qtype::A),
        Some(Rcode::ServFail)
    );
    assert!(records_of("").synced, "a snapshot is complete");
}

#[test]
fn names_outside_and_search_expansions() {
    let r = records_of(&dual());
    assert_eq!(rcode(&r, "example.com.", qtype::A), None);
    assert_eq!(rcode(&r, "xcluster.local.", qtype::A), None);
    assert_eq!(rcode(&r, ".", qtype::A), None);
    assert_eq!(
        rcode(&r, "www.example.com.demo.svc.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
    assert_eq!(
        rcode(&r, "svc.cluster.local.", qtype::A),
        Some(Rcode::NoError)
    );
    assert_eq!(
        rcode(&r, "pod.cluster.local.", qtype::A),
        Some(Rcode::NoError)
    );
    assert_eq!(
        rcode(&r, "demo.svc.cluster.local.", qtype::A),
        Some(Rcode::NoError)
    );
    assert_eq!(
        rcode(&r, "nons.svc.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
    assert_eq!(
        rcode(&r, "x.dual.demo.svc.cluster.local.", qtype::A),
        Some(Rcode::NxDomain)
    );
}

#[test]
fn reverse_names() {
    let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
    assert_eq!(
        resolve::reverse_address("1.0.96.10.in-addr.arpa."),
        ip("10.96.0.1")
    );
    assert_eq!(
        resolve::reverse_address(
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        ),
        ip("2001:db8::567:89ab")
    );
    for bad in [
        "0.96.10.in-addr.arpa.",
        "1.0.0.96.10.in-addr.arpa.",
        "256.0.96.10.in-addr.arpa.",
        "01.0.96.10.in-addr.arpa.",
        "x.0.96.10.in-addr.arpa.",
        "b.a.9.8.ip6.arpa.",
        "in-addr.arpa.",
    ] {
        assert_eq!(resolve::reverse_address(bad), None, "{bad}");
    }
    assert_eq!(service::dashed("fd00::1:5"), "fd00--1-5");
}
