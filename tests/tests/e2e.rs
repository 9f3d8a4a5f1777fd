//! End-to-end tests of the agent in network namespaces with real DNS clients.

use dns_agent_tests::netns::Topology;

#[test]
fn topology_pod_reaches_service_ip() {
    let node_ns;
    {
        let topo = Topology::create("e2e-topo").expect("create topology");
        node_ns = topo.node_ns().to_string();
        // Nothing listens yet: the node's ICMP port-unreachable coming back proves both directions.
        let server = format!("@{}", topo.service_ip());
        let out = topo
            .exec_in_pod("dig", &["+tries=1", "+time=2", &server, "x."])
            .expect("run dig");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("connection refused"),
            "pod does not reach the service IP: {text}"
        );
        let resolv = topo.exec_in_pod("cat", &["/etc/resolv.conf"]).expect("cat");
        assert!(String::from_utf8_lossy(&resolv.stdout).contains("ndots:5"));
    }
    assert!(
        !std::path::Path::new("/run/netns").join(&node_ns).exists(),
        "namespace left behind"
    );
}
