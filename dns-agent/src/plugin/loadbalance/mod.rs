//! `loadbalance`: rotates the address records of each answer (see `README.md` beside this file).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hickory_proto::rr::{Record, RecordType};

use super::{Answer, Ctx, Next, Plugin, Setup};
use crate::corefile::{CorefileError, Directive};
use crate::server::answer::Request;

/// Round robin over the A and AAAA records of the answer section: each response starts one
/// address further than the previous one.
#[derive(Debug, Default)]
pub struct LoadBalance {
    turn: AtomicUsize,
}

/// Reads `loadbalance [round_robin]`.
pub fn setup(d: &Directive, _s: &Setup<'_>) -> Result<Arc<dyn Plugin>, CorefileError> {
    match d.args.as_slice() {
        [] => {}
        [policy] if policy.text == "round_robin" => {}
        [policy] => {
            return Err(CorefileError::new(
                &policy.pos,
                format!(
                "loadbalance: policy {:?}: expected round_robin (the only policy this agent has)",
                policy.text
            ),
            ))
        }
        [_, extra, ..] => {
            return Err(CorefileError::new(
                &extra.pos,
                format!(
                "loadbalance: unexpected argument {:?}: expected at most one policy (round_robin)",
                extra.text
            ),
            ))
        }
    }
    if let Some(option) = d.block_directives().first() {
        return Err(CorefileError::new(
            &option.name.pos,
            format!(
                "loadbalance: option {:?}: round_robin takes no options",
                option.name.text
            ),
        ));
    }
    Ok(Arc::new(LoadBalance::default()))
}

/// CNAMEs first, then the other records in their order, then the addresses rotated left by
/// `turn` (CoreDNS's order: a CNAME chain stays in front of the addresses it leads to).
pub fn round_robin(records: Vec<Record>, turn: usize) -> Vec<Record> {
    let mut cnames = Vec::new();
    let mut addresses = Vec::new();
    let mut rest = Vec::new();
    for r in records {
        match r.record_type() {
            RecordType::CNAME => cnames.push(r),
            RecordType::A | RecordType::AAAA => addresses.push(r),
            _ => rest.push(r),
        }
    }
    if !addresses.is_empty() {
        let n = turn % addresses.len();
        addresses.rotate_left(n);
    }
    cnames.extend(rest);
    cnames.extend(addresses);
    cnames
}

impl LoadBalance {
    /// The turn of the next answer with several addresses (each takes one).
    pub fn next_turn(&self) -> usize {
        self.turn.fetch_add(1, Ordering::Relaxed)
    }
}

impl Plugin for LoadBalance {
    fn name(&self) -> &'static str {
        "loadbalance"
    }

    fn serve<'a>(&'a self, ctx: &'a Ctx, req: Request, next: Next<'a>) -> Answer<'a> {
        Box::pin(async move {
            let mut msg = next.serve(ctx, req).await?;
            let answers = msg.take_answers();
            let addresses = answers
                .iter()
                .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
                .count();
            if addresses > 1 {
                msg.insert_answers(round_robin(answers, self.next_turn()));
            } else {
                msg.insert_answers(answers);
            }
            Ok(msg)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::str::FromStr;
    use std::time::Instant;

    use hickory_proto::op::{Header, Message, Query, ResponseCode};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX};
    use hickory_proto::rr::{Name, RData};

    use super::*;
    use crate::corefile;
    use crate::server::answer::Transport;

    /// Answers every query with the records it was built with.
    struct Fixed(Vec<Record>);

    impl Plugin for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }

        fn serve<'a>(&'a self, _: &'a Ctx, req: Request, _: Next<'a>) -> Answer<'a> {
            let mut msg = req.reply(ResponseCode::NoError);
            msg.insert_answers(self.0.clone());
            Box::pin(async move { Ok(msg) })
        }
    }

    fn name(s: &str) -> Name {
        Name::from_str(s).expect("test name")
    }

    fn a(last: u8) -> Record {
        Record::from_rdata(
            name("web.example.org."),
            30,
            RData::A(A(Ipv4Addr::new(10, 0, 0, last))),
        )
    }

    fn aaaa(last: u16) -> Record {
        Record::from_rdata(
            name("web.example.org."),
            30,
            RData::AAAA(AAAA(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, last))),
        )
    }

    fn cname() -> Record {
        Record::from_rdata(
            name("www.example.org."),
            30,
            RData::CNAME(CNAME(name("web.example.org."))),
        )
    }

    fn mx(pref: u16) -> Record {
        Record::from_rdata(
            name("example.org."),
            30,
            RData::MX(MX::new(pref, name("mail.example.org."))),
        )
    }

    fn ctx() -> Ctx {
        Ctx {
            client: "127.0.0.1:5353".parse().expect("addr"),
            local: "127.0.0.1:53".parse().expect("addr"),
            zone: Arc::from("."),
            received: Instant::now(),
        }
    }

    fn request(qname: &str) -> Request {
        Request {
            header: Header::new(),
            question: Query::query(name(qname), RecordType::A),
            edns: None,
            transport: Transport::Udp,
        }
    }

    fn serve(lb: &Arc<dyn Plugin>, records: Vec<Record>) -> Message {
        let chain: Vec<Arc<dyn Plugin>> = vec![Arc::clone(lb), Arc::new(Fixed(records))];
        let ctx = ctx();
        futures::executor::block_on(Next::chain(&chain).serve(&ctx, request("www.example.org.")))
            .expect("answer")
    }

    fn setup_text(text: &str) -> Result<Arc<dyn Plugin>, CorefileError> {
        let file = corefile::parse("Corefile", text).expect("corefile parses");
        let d = &file.blocks[0].directives[0];
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let s = Setup {
            zones: &[".".to_owned()],
            dir: std::path::Path::new("."),
            metrics: &metrics,
            server: "dns://:53",
        };
        setup(d, &s)
    }

    fn setup_err(text: &str) -> CorefileError {
        match setup_text(text) {
            Ok(_) => panic!("setup accepted {text:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn successive_answers_rotate_the_addresses() {
        let lb = setup_text(".:53 {\n    loadbalance round_robin\n}\n").expect("setup");
        let records = vec![a(1), a(2), a(3)];
        let firsts: Vec<_> = (0..4)
            .map(|_| serve(&lb, records.clone()).answers()[0].clone())
            .collect();
        assert_eq!(firsts, vec![a(1), a(2), a(3), a(1)]);
        let second = serve(&lb, records.clone());
        assert_eq!(second.answers(), &[a(2), a(3), a(1)]);
    }

    #[test]
    fn cname_stays_first_and_other_records_keep_their_order() {
        let lb = setup_text(".:53 {\n    loadbalance\n}\n").expect("setup");
        let records = vec![cname(), aaaa(1), mx(10), aaaa(2), mx(20)];
        serve(&lb, records.clone());
        let msg = serve(&lb, records);
        assert_eq!(msg.answers(), &[cname(), mx(10), mx(20), aaaa(2), aaaa(1)]);
    }

    #[test]
    fn answers_without_several_addresses_are_untouched() {
        let lb = setup_text(".:53 {\n    loadbalance\n}\n").expect("setup");
        let records = vec![mx(10), mx(20), mx(30)];
        for _ in 0..3 {
            assert_eq!(serve(&lb, records.clone()).answers(), records.as_slice());
        }
        let single = vec![cname(), a(1)];
        assert_eq!(serve(&lb, single.clone()).answers(), single.as_slice());
    }

    #[test]
    fn setup_errors_name_the_token() {
        let err = setup_err(".:53 {\n    loadbalance weighted\n}\n");
        assert_eq!(
            err.to_string(),
            "Corefile:2:17: loadbalance: policy \"weighted\": expected round_robin (the only policy this agent has)"
        );
        let err = setup_err(".:53 {\n    loadbalance round_robin extra\n}\n");
        assert_eq!(err.pos.line, 2);
        assert_eq!(err.pos.col, 29);
        let err = setup_err(".:53 {\n    loadbalance {\n        prefer 10.0.0.0/8\n    }\n}\n");
        assert_eq!(
            err.to_string(),
            "Corefile:3:9: loadbalance: option \"prefer\": round_robin takes no options"
        );
    }
}
