//! `kubernetes`: the cluster zone from the record model (see `README.md` beside this file).

mod setup;

pub use setup::{config, KubernetesConfig};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::{Answer, Ctx, Next, Plugin};
use crate::records::SharedRecords;
use crate::server::answer::{from_records, Request};

/// Answers the questions in the records' zones; the rest (and what falls through) goes on.
pub struct Kubernetes {
    records: SharedRecords,
}

impl Kubernetes {
    pub fn new(records: SharedRecords) -> Self {
        Kubernetes { records }
    }

    fn answer(&self, req: &Request) -> Option<(Message, Option<Name>)> {
        // The read lock is released before any await.
        let records = self.records.load();
        let msg = from_records(req, &records)?;
        let chase = out_of_zone_target(req, &msg, |name| {
            records
                .zone_of(&crate::server::answer::lookup_key(name))
                .is_some()
        });
        Some((msg, chase))
    }
}

/// For an A/AAAA question answered with a CNAME chain (an ExternalName service) that ends
/// outside the zones: the name the rest of the chain must resolve.
fn out_of_zone_target(
    req: &Request,
    msg: &Message,
    in_zone: impl Fn(&Name) -> bool,
) -> Option<Name> {
    if !matches!(req.question.query_type(), RecordType::A | RecordType::AAAA) {
        return None;
    }
    match msg.answers().last().map(|r| r.data()) {
        Some(RData::CNAME(target)) if !in_zone(&target.0) => Some(target.0.clone()),
        _ => None,
    }
}

impl Plugin for Kubernetes {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn serve<'a>(&'a self, ctx: &'a Ctx, req: Request, next: Next<'a>) -> Answer<'a> {
        match self.answer(&req) {
            None => next.serve(ctx, req),
            Some((msg, None)) => Box::pin(async move { Ok(msg) }),
            // An ExternalName pointing outside the cluster: the rest of the chain (forward)
            // resolves the target, whose records follow the CNAME, as CoreDNS does.
            Some((mut msg, Some(target))) if !next.is_empty() => Box::pin(async move {
                let mut sub = req.clone();
                sub.question = Query::query(target, req.question.query_type());
                match next.serve(ctx, sub).await {
                    Ok(found) if found.response_code() == ResponseCode::NoError => {
                        msg.add_answers(found.answers().iter().cloned());
                    }
                    Ok(_) => {}
                    Err(e) => ::log::debug!("resolving an ExternalName target: {e}"),
                }
                Ok(msg)
            }),
            Some((msg, Some(_))) => Box::pin(async move { Ok(msg) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use hickory_proto::op::Header;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::Record;

    use super::*;
    use crate::records::{build, Settings};
    use crate::server::answer::Transport;

    /// Answers every name with 192.0.2.7 and remembers what it was asked.
    struct Upstream(Mutex<Vec<String>>);

    impl Plugin for Upstream {
        fn name(&self) -> &'static str {
            "upstream"
        }
        fn serve<'a>(&'a self, _: &'a Ctx, req: Request, _: Next<'a>) -> Answer<'a> {
            self.0
                .lock()
                .expect("lock")
                .push(req.question.name().to_string());
            let mut m = req.reply(ResponseCode::NoError);
            m.add_answer(Record::from_rdata(
                req.question.name().clone(),
                60,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
            ));
            Box::pin(async move { Ok(m) })
        }
    }

    #[tokio::test]
    async fn external_names_are_resolved_by_the_rest_of_the_chain() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata:\n  name: ext\n  namespace: default\nspec:\n  type: ExternalName\n  externalName: www.example.org\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: inner\n  namespace: default\nspec:\n  type: ExternalName\n  externalName: web.default.svc.cluster.local\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  clusterIP: 10.96.0.5\n";
        let loaded = crate::snapshot::parse("t.yaml", yaml).expect("snapshot");
        let records = build(&loaded.cluster, &Settings::new("cluster.local", 5), 1).0;
        let upstream = Arc::new(Upstream(Mutex::new(Vec::new())));
        let chain: Vec<Arc<dyn Plugin>> = vec![
            Arc::new(Kubernetes::new(SharedRecords::new(records))),
            upstream.clone(),
        ];
        let ctx = Ctx {
            client: SocketAddr::from(([10, 0, 0, 1], 5353)),
            local: SocketAddr::from(([127, 0, 0, 1], 53)),
            zone: Arc::from("."),
            received: Instant::now(),
        };
        let ask = |name: &str, t: RecordType| Request {
            header: Header::new(),
            question: Query::query(Name::from_ascii(name).expect("name"), t),
            edns: None,
            transport: Transport::Udp,
        };
        let show = |m: &Message| -> Vec<String> {
            m.answers()
                .iter()
                .map(|r| format!("{} {}", r.name(), r.data()))
                .collect()
        };
        let m = Next::chain(&chain)
            .serve(&ctx, ask("ext.default.svc.cluster.local.", RecordType::A))
            .await
            .expect("answer");
        assert_eq!(
            show(&m),
            [
                "ext.default.svc.cluster.local. www.example.org.",
                "www.example.org. 192.0.2.7"
            ]
        );
        // In-zone targets are resolved by the records themselves; TXT is not chased.
        let m = Next::chain(&chain)
            .serve(&ctx, ask("inner.default.svc.cluster.local.", RecordType::A))
            .await
            .expect("answer");
        assert_eq!(
            show(&m),
            [
                "inner.default.svc.cluster.local. web.default.svc.cluster.local.",
                "web.default.svc.cluster.local. 10.96.0.5"
            ]
        );
        let m = Next::chain(&chain)
            .serve(&ctx, ask("ext.default.svc.cluster.local.", RecordType::TXT))
            .await
            .expect("answer");
        assert_eq!(
            show(&m),
            ["ext.default.svc.cluster.local. www.example.org."]
        );
        assert_eq!(*upstream.0.lock().expect("lock"), ["www.example.org."]);
    }
}
