//! Unit tests of the watch state: lists replace, events apply, bad objects are skipped.

use serde_json::json;

use super::*;

fn obj(v: serde_json::Value) -> DynamicObject {
    serde_json::from_value(v).expect("a DynamicObject")
}

fn svc(ns: &str, name: &str, ip: &str) -> DynamicObject {
    obj(
        json!({"metadata": {"name": name, "namespace": ns, "resourceVersion": "1"},
        "spec": {"clusterIP": ip, "clusterIPs": [ip]}}),
    )
}

fn slice(ns: &str, name: &str, svc: Option<&str>) -> DynamicObject {
    let labels = match svc {
        Some(s) => json!({"kubernetes.io/service-name": s}),
        None => json!({}),
    };
    obj(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.0.1"]}]}),
    )
}

fn ns(name: &str) -> DynamicObject {
    obj(json!({"metadata": {"name": name}}))
}

fn services(state: &State) -> Vec<String> {
    state
        .cluster
        .services
        .keys()
        .map(ToString::to_string)
        .collect()
}

fn list(state: &mut State, kind: Kind, objects: Vec<DynamicObject>) {
    state.handle(kind, Ok(Event::Init));
    for o in objects {
        state.handle(kind, Ok(Event::InitApply(o)));
    }
    state.handle(kind, Ok(Event::InitDone));
}

#[test]
fn synced_once_every_kind_is_listed() {
    let mut state = State::new(&[Kind::Namespace, Kind::Service, Kind::EndpointSlice]);
    assert!(!state.synced());
    list(
        &mut state,
        Kind::Service,
        vec![svc("default", "web", "10.96.0.1")],
    );
    list(&mut state, Kind::Namespace, vec![ns("default")]);
    assert!(!state.synced(), "EndpointSlices not listed yet");
    list(&mut state, Kind::EndpointSlice, vec![]);
    assert!(state.synced());
    assert_eq!(services(&state), ["default/web"]);
    assert!(state.cluster.namespaces.contains_key("default"));
    assert!(state.changes.full);
    // Pods are not watched here: events for them are ignored.
    state.handle(Kind::Pod, Ok(Event::InitDone));
    assert!(state.cluster.pods.is_empty());
}

#[test]
fn a_relist_replaces_only_when_done() {
    let mut state = State::new(&[Kind::Service]);
    list(
        &mut state,
        Kind::Service,
        vec![
            svc("default", "a", "10.96.0.1"),
            svc("default", "b", "10.96.0.2"),
        ],
    );
    state.changes = Changes::default();
    state.handle(Kind::Service, Ok(Event::Init));
    state.handle(
        Kind::Service,
        Ok(Event::InitApply(svc("default", "c", "10.96.0.3"))),
    );
    assert_eq!(
        services(&state),
        ["default/a", "default/b"],
        "old state served meanwhile"
    );
    assert!(state.changes.is_empty());
    state.handle(Kind::Service, Ok(Event::InitDone));
    assert_eq!(
        services(&state),
        ["default/c"],
        "objects missing from the new list are gone"
    );
    assert!(state.changes.full && state.synced());
}

#[test]
fn events_apply_and_delete() {
    let mut state = State::new(&[Kind::Service]);
    list(&mut state, Kind::Service, vec![]);
    state.changes = Changes::default();
    state.handle(Kind::Service, Ok(Event::Apply(svc("x", "a", "10.96.0.1"))));
    state.handle(Kind::Service, Ok(Event::Apply(svc("x", "a", "10.96.0.9"))));
    let shape = &state.cluster.services[&ObjectKey::new("x", "a")].shape;
    let want: std::net::IpAddr = "10.96.0.9".parse().expect("ip");
    assert!(
        matches!(shape, crate::cluster::Shape::ClusterIp { ips, .. } if ips[..] == [want]),
        "{shape:?}"
    );
    let key = ObjectKey::new("x", "a");
    assert_eq!(state.changes.services.iter().collect::<Vec<_>>(), [&key]);
    assert!(!state.changes.full);
    state.changes = Changes::default();
    state.handle(Kind::Service, Ok(Event::Delete(svc("x", "a", "10.96.0.9"))));
    assert!(state.cluster.services.is_empty());
    assert_eq!(state.changes.services.iter().collect::<Vec<_>>(), [&key]);
    // An error changes nothing.
    state.handle(Kind::Service, Err(watcher::Error::NoResourceVersion));
    assert!(state.synced());
}

#[test]
fn bad_objects_are_skipped_and_replace_nothing_else() {
    let mut state = State::new(&[Kind::Service, Kind::EndpointSlice]);
    list(
        &mut state,
        Kind::Service,
        vec![
            svc("default", "good", "10.96.0.1"),
            svc("default", "bad", "10.96.0.300"),
        ],
    );
    assert_eq!(services(&state), ["default/good"]);
    // Turning bad drops the earlier version of the same object only.
    state.handle(
        Kind::Service,
        Ok(Event::Apply(svc("default", "good", "nonsense"))),
    );
    assert!(state.cluster.services.is_empty());
    // Not a Service at all (clusterIPs is not a list).
    let weird = obj(json!({"metadata": {"name": "w", "namespace": "default"},
        "spec": {"clusterIPs": "10.0.0.1"}}));
    state.handle(Kind::Service, Ok(Event::Apply(weird)));
    assert!(state.cluster.services.is_empty());
    // No name, no namespace.
    state.handle(
        Kind::Service,
        Ok(Event::Apply(obj(json!({"metadata": {}})))),
    );
    state.handle(
        Kind::Service,
        Ok(Event::Apply(obj(json!({"metadata": {"name": "n"}})))),
    );
    assert!(state.cluster.services.is_empty());

    list(
        &mut state,
        Kind::EndpointSlice,
        vec![
            slice("default", "linked", Some("good")),
            slice("default", "orphan", None),
        ],
    );
    let slices: Vec<String> = state
        .cluster
        .endpoint_slices
        .keys()
        .map(ToString::to_string)
        .collect();
    assert_eq!(slices, ["default/linked"]);
}

#[test]
fn slice_events_name_the_services_they_change() {
    let mut state = State::new(&[Kind::EndpointSlice]);
    list(&mut state, Kind::EndpointSlice, vec![]);
    state.changes = Changes::default();
    let names = |state: &State| -> Vec<String> {
        state
            .changes
            .services
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    state.handle(
        Kind::EndpointSlice,
        Ok(Event::Apply(slice("default", "s1", Some("a")))),
    );
    assert_eq!(names(&state), ["default/a"]);
    state.changes = Changes::default();
    // Relabelled to another service: both change.
    state.handle(
        Kind::EndpointSlice,
        Ok(Event::Apply(slice("default", "s1", Some("b")))),
    );
    assert_eq!(names(&state), ["default/a", "default/b"]);
    let key = ObjectKey::new("default", "b");
    assert_eq!(state.cluster.slices_of(&key).count(), 1);
    assert_eq!(
        state
            .cluster
            .slices_of(&ObjectKey::new("default", "a"))
            .count(),
        0
    );
    state.changes = Changes::default();
    // Losing its label: skipped, and the service it named changes.
    state.handle(
        Kind::EndpointSlice,
        Ok(Event::Apply(slice("default", "s1", None))),
    );
    assert_eq!(names(&state), ["default/b"]);
    assert_eq!(state.cluster.slices_of(&key).count(), 0);
    assert!(state.cluster.endpoint_slices.is_empty());
}

#[test]
fn objects_are_named_as_warnings_name_them() {
    assert_eq!(
        describe(Kind::Service, &svc("ns", "web", "")),
        "Service ns/web"
    );
    assert_eq!(
        describe(Kind::Namespace, &ns("kube-system")),
        "Namespace kube-system"
    );
}

#[test]
fn backoff_doubles_up_to_the_cap_and_resets() {
    let mut b = backoff();
    let waits: Vec<Duration> = (&mut b).take(8).collect();
    assert_eq!(waits[0], BACKOFF_MIN);
    assert_eq!(waits[1], BACKOFF_MIN * 2);
    assert_eq!(*waits.last().expect("8 waits"), BACKOFF_MAX);
    b.reset();
    assert_eq!(b.next(), Some(BACKOFF_MIN));
}

#[test]
fn http_410_is_told_apart() {
    let gone = ErrorResponse {
        status: "Failure".into(),
        message: "too old resource version".into(),
        reason: "Expired".into(),
        code: 410,
    };
    let forbidden = ErrorResponse {
        code: 403,
        ..gone.clone()
    };
    assert!(http_gone(&watcher::Error::WatchFailed(kube::Error::Api(
        gone.clone()
    ))));
    assert!(http_gone(&watcher::Error::WatchStartFailed(
        kube::Error::Api(gone.clone())
    )));
    assert!(
        !http_gone(&watcher::Error::WatchError(gone)),
        "the watcher re-lists by itself"
    );
    assert!(!http_gone(&watcher::Error::WatchFailed(kube::Error::Api(
        forbidden
    ))));
}
