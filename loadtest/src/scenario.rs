//! Scenarios as plans: which clients exist, what each one publishes or subscribes to, how they
//! are spread over workers, and which subscriber should receive which publisher. Pure: built
//! from [`Args`] and a run tag, no sockets.
//!
//! Worked example, `--scenario fan-out --publishers 2 --subscribers 4 --topics 2`, run tag
//! `00c0ffee`: publishers 0 and 1 publish to `lt/00c0ffee/fan-out/0` and `…/1`; subscribers 0 and 2
//! subscribe to `…/0`, 1 and 3 to `…/1`; so publisher `p` is expected at subscriber `s` when
//! `p % 2 == s % 2`. Every topic carries the run tag, so an earlier run's retained or late
//! messages never match.

use coremq::protocol::{TopicFilter, TopicName};

use crate::args::{Args, Placement, Scenario};

/// What one client does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Publishes `0..cap` to `topics[seq % topics.len()]`; with `marker`, its payloads carry
    /// its `~p<id>~` marker (`filtered`).
    Publisher {
        id: u32,
        topics: Vec<TopicName>,
        retain: bool,
        cap: u64,
        marker: bool,
    },
    /// Subscribes to `filter`; `deferred` subscribers wait for the coordinator's signal
    /// (`retained`: subscribe after the retained messages are in place).
    Subscriber {
        id: u32,
        filter: TopicFilter,
        deferred: bool,
    },
    /// Connects and stays connected (`idle`).
    Holder,
}

/// One client of the plan. Lives on the worker it is assigned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    pub client_id: String,
    pub role: Role,
}

/// The whole run's clients and expectations. Built once by the coordinator; workers get their
/// share of `clients`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: Scenario,
    pub run: u32,
    pub clients: Vec<ClientSpec>,
    pub publishers: u32,
    pub subscribers: u32,
    /// Delivery units: one per subscriber, or one for the whole shared group.
    pub units: Vec<Vec<u32>>,
    /// `connect`: concurrent connect/disconnect loops.
    pub storm_slots: u32,
    /// `connect`: total connects allowed (`--max-messages`).
    pub storm_cap: Option<u64>,
    /// `fan-out` topic groups.
    topics: u32,
}

/// Topic prefix of a run.
pub fn prefix(run: u32) -> String {
    format!("lt/{run:08x}")
}

fn topic(s: &str) -> Result<TopicName, String> {
    TopicName::copy_from(s).map_err(|e| format!("topic {s:?}: {e:?}"))
}

fn filter(s: &str) -> Result<TopicFilter, String> {
    TopicFilter::copy_from(s).map_err(|e| format!("filter {s:?}: {e:?}"))
}

/// `base`, or `base-1`, `base-2`, … : the first whose home shard on a coremq broker with `shards`
/// shards is (`Same`) or is not (`Cross`) the home shard of `partner`.
fn placed(base: &str, partner: &str, placement: Placement, shards: usize) -> String {
    let home = |id: &str| coremq::mesh::home_shard(id.as_bytes(), shards);
    let want = |id: &str| (home(id) == home(partner)) == (placement == Placement::Same);
    std::iter::once(base.to_string())
        .chain((1..).map(|k| format!("{base}-{k}")))
        .find(|id| want(id))
        .unwrap_or_else(|| base.to_string())
}

/// Publisher `p`'s share of a total cap, split as evenly as possible.
fn share(total: Option<u64>, parts: u32, p: u32) -> u64 {
    match total {
        None => u64::MAX,
        Some(n) => n / u64::from(parts) + u64::from(u64::from(p) < n % u64::from(parts)),
    }
}

impl Plan {
    pub fn build(args: &Args, run: u32) -> Result<Plan, String> {
        let pre = prefix(run);
        let id = |kind: &str, n: u32| format!("lt{run:08x}-{kind}{n}");
        let mut plan = Plan {
            scenario: args.scenario,
            run,
            clients: Vec::new(),
            publishers: 0,
            subscribers: 0,
            units: Vec::new(),
            storm_slots: 0,
            storm_cap: None,
            topics: args.topics.max(1),
        };
        let marker = args.scenario == Scenario::Filtered;
        let publisher = |n: u32, topics: Vec<TopicName>, retain: bool, cap: u64| ClientSpec {
            client_id: id("p", n),
            role: Role::Publisher {
                id: n,
                topics,
                retain,
                cap,
                marker,
            },
        };
        let (pubs, subs) = match args.scenario {
            Scenario::Pairs => (args.pairs, args.pairs),
            Scenario::Connect | Scenario::Idle => (0, 0),
            _ => (args.publishers, args.subscribers),
        };
        let mut clients = Vec::new();
        for p in 0..pubs {
            let cap = share(args.max_messages, pubs, p);
            let spec = match args.scenario {
                Scenario::FanOut => {
                    let t = topic(&format!("{pre}/fan-out/{}", p % plan.topics))?;
                    publisher(p, vec![t], false, cap)
                }
                Scenario::FanIn => {
                    publisher(p, vec![topic(&format!("{pre}/fan-in/{p}"))?], false, cap)
                }
                Scenario::Pairs => {
                    publisher(p, vec![topic(&format!("{pre}/pairs/{p}"))?], false, cap)
                }
                Scenario::Shared => {
                    let t = topic(&format!("{pre}/shared/{}", p % plan.topics))?;
                    publisher(p, vec![t], false, cap)
                }
                Scenario::Retained => {
                    let topics = (p..plan.topics)
                        .step_by(pubs as usize)
                        .map(|k| topic(&format!("{pre}/retained/{k}")))
                        .collect::<Result<Vec<_>, _>>()?;
                    let n = topics.len() as u64;
                    publisher(p, topics, true, n)
                }
                Scenario::Filtered => {
                    publisher(p, vec![topic(&format!("{pre}/filtered"))?], false, cap)
                }
                Scenario::Connect | Scenario::Idle => unreachable!("no publishers"),
            };
            clients.push(spec);
        }
        for s in 0..subs {
            let f = match args.scenario {
                Scenario::FanOut => format!("{pre}/fan-out/{}", s % plan.topics),
                Scenario::FanIn => format!("{pre}/fan-in/+"),
                Scenario::Pairs => format!("{pre}/pairs/{s}"),
                Scenario::Shared if plan.topics > 1 => format!("$share/lt/{pre}/shared/+"),
                Scenario::Shared => format!("$share/lt/{pre}/shared/0"),
                Scenario::Retained => format!("{pre}/retained/#"),
                // coremq's $filter/ prefix, `"` and `~` need no encoding.
                Scenario::Filtered => format!(
                    "$filter/{}/{pre}/filtered",
                    crate::payload::marker_filter(s % pubs.max(1))
                ),
                Scenario::Connect | Scenario::Idle => unreachable!("no subscribers"),
            };
            let client_id = match (args.scenario, args.placement) {
                (Scenario::Pairs, Some((placement, shards))) => {
                    placed(&id("s", s), &id("p", s), placement, shards)
                }
                _ => id("s", s),
            };
            clients.push(ClientSpec {
                client_id,
                role: Role::Subscriber {
                    id: s,
                    filter: filter(&f)?,
                    deferred: args.scenario == Scenario::Retained,
                },
            });
        }
        plan.units = if args.scenario == Scenario::Shared {
            vec![(0..subs).collect()]
        } else {
            (0..subs).map(|s| vec![s]).collect()
        };
        match args.scenario {
            Scenario::Idle => {
                for n in 0..args.connections {
                    // With --subscribe, a filter of its own that no one publishes to: the
                    // connection is set up once its SUBACK is in.
                    let role = if args.subscribe {
                        Role::Subscriber {
                            id: n,
                            filter: filter(&format!("{pre}/idle/{n}"))?,
                            deferred: false,
                        }
                    } else {
                        Role::Holder
                    };
                    clients.push(ClientSpec {
                        client_id: id("i", n),
                        role,
                    });
                }
            }
            Scenario::Connect => {
                plan.storm_slots = args.connections;
                plan.storm_cap = args.max_messages;
            }
            _ => {}
        }
        plan.publishers = pubs;
        plan.subscribers = subs;
        plan.clients = clients;
        Ok(plan)
    }

    /// Whether delivery unit `unit` should receive publisher `publisher`'s messages.
    pub fn expects(&self, publisher: u32, unit: usize) -> bool {
        match self.scenario {
            Scenario::FanOut => publisher % self.topics == unit as u32 % self.topics,
            Scenario::Pairs => publisher as usize == unit,
            Scenario::Filtered => publisher == unit as u32 % self.publishers.max(1),
            Scenario::FanIn | Scenario::Shared | Scenario::Retained => true,
            Scenario::Connect | Scenario::Idle => false,
        }
    }

    /// Deliveries owed when every publisher sent `sent[p]` messages.
    pub fn expected_deliveries(&self, sent: &[u64]) -> u64 {
        let mut total = 0;
        for (p, &n) in sent.iter().enumerate() {
            let units = (0..self.units.len())
                .filter(|&u| self.expects(p as u32, u))
                .count() as u64;
            total += n * units;
        }
        total
    }

    /// Worker `w`'s clients out of `threads` (round robin, so publishers and subscribers mix).
    pub fn clients_of(&self, w: usize, threads: usize) -> Vec<ClientSpec> {
        self.clients
            .iter()
            .skip(w)
            .step_by(threads)
            .cloned()
            .collect()
    }

    /// Worker `w`'s share of the connect loops and of their cap.
    pub fn storm_of(&self, w: usize, threads: usize) -> (u32, Option<u64>) {
        let slots = share(Some(u64::from(self.storm_slots)), threads as u32, w as u32) as u32;
        let cap = self
            .storm_cap
            .map(|c| share(Some(c), threads as u32, w as u32));
        (slots, cap)
    }

    /// Sockets the run holds at once (for the file descriptor limit).
    pub fn sockets(&self) -> u64 {
        self.clients.len() as u64 + u64::from(self.storm_slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::parse;

    fn plan(args: &str) -> Plan {
        let argv: Vec<String> = args.split_whitespace().map(String::from).collect();
        Plan::build(&parse(&argv, 2).unwrap(), 0x00c0_ffee).unwrap()
    }

    fn topics_of(c: &ClientSpec) -> Vec<String> {
        match &c.role {
            Role::Publisher { topics, .. } => {
                topics.iter().map(|t| t.as_str().to_string()).collect()
            }
            Role::Subscriber { filter, .. } => vec![filter.as_str().to_string()],
            Role::Holder => vec![],
        }
    }

    #[test]
    fn fan_out_worked_example() {
        let p = plan("--scenario fan-out --publishers 2 --subscribers 4 --topics 2");
        assert_eq!(p.clients.len(), 6);
        assert_eq!(topics_of(&p.clients[1]), ["lt/00c0ffee/fan-out/1"]);
        assert_eq!(topics_of(&p.clients[4]), ["lt/00c0ffee/fan-out/0"]);
        assert!(p.expects(0, 2) && !p.expects(0, 3) && p.expects(1, 3));
        assert_eq!(p.expected_deliveries(&[10, 5]), 10 * 2 + 5 * 2);
    }

    #[test]
    fn filtered_subscribers_each_pass_one_publisher() {
        let p = plan("--scenario filtered --publishers 3 --subscribers 4");
        assert_eq!(topics_of(&p.clients[2]), ["lt/00c0ffee/filtered"]);
        assert_eq!(
            topics_of(&p.clients[6]),
            [r#"$filter/payload contains "~p0~"/lt/00c0ffee/filtered"#]
        );
        assert!(p.expects(0, 3) && p.expects(1, 1) && !p.expects(0, 1));
        assert_eq!(p.expected_deliveries(&[10, 10, 10]), 40);
    }

    #[test]
    fn pairs_placement_picks_ids_on_the_same_or_other_shard() {
        use coremq::mesh::home_shard;
        for (placement, same) in [("same", true), ("cross", false)] {
            let p = plan(&format!(
                "--scenario pairs --pairs 20 --placement {placement} --shards 3"
            ));
            for k in 0..20 {
                let (publ, sub) = (&p.clients[k].client_id, &p.clients[20 + k].client_id);
                let on = |id: &String| home_shard(id.as_bytes(), 3);
                assert_eq!(on(publ) == on(sub), same, "{publ} {sub}");
            }
        }
    }

    #[test]
    fn fan_in_uses_a_wildcard() {
        let p = plan("--scenario fan-in --publishers 3 --subscribers 2");
        assert_eq!(topics_of(&p.clients[2]), ["lt/00c0ffee/fan-in/2"]);
        assert_eq!(topics_of(&p.clients[3]), ["lt/00c0ffee/fan-in/+"]);
        assert_eq!(p.expected_deliveries(&[1, 1, 1]), 6);
    }

    #[test]
    fn pairs_match_one_to_one() {
        let p = plan("--scenario pairs --pairs 3");
        assert_eq!((p.publishers, p.subscribers), (3, 3));
        assert!(p.expects(1, 1) && !p.expects(1, 2));
    }

    #[test]
    fn shared_group_is_one_unit() {
        let p = plan("--scenario shared --publishers 2 --subscribers 3");
        assert_eq!(p.units, vec![vec![0, 1, 2]]);
        assert_eq!(topics_of(&p.clients[2]), ["$share/lt/lt/00c0ffee/shared/0"]);
        assert_eq!(p.expected_deliveries(&[4, 4]), 8);
    }

    #[test]
    fn retained_topics_split_over_publishers() {
        let p = plan("--scenario retained --topics 5 --publishers 2 --subscribers 1");
        match &p.clients[1].role {
            Role::Publisher {
                topics,
                cap,
                retain,
                ..
            } => {
                assert_eq!((topics.len(), *cap, *retain), (2, 2, true));
                assert_eq!(topics[1].as_str(), "lt/00c0ffee/retained/3");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p.clients[2].role,
            Role::Subscriber { deferred: true, .. }
        ));
    }

    #[test]
    fn max_messages_is_split_across_publishers() {
        let p = plan("--scenario fan-in --publishers 3 --max-messages 10");
        let caps: Vec<u64> = p
            .clients
            .iter()
            .filter_map(|c| match c.role {
                Role::Publisher { cap, .. } => Some(cap),
                _ => None,
            })
            .collect();
        assert_eq!(caps, [4, 3, 3]);
    }

    #[test]
    fn workers_get_round_robin_shares() {
        let p = plan("--scenario idle --connections 5");
        assert_eq!(p.clients_of(0, 2).len(), 3);
        assert_eq!(p.clients_of(1, 2).len(), 2);
        let c = plan("--scenario connect --connections 5 --max-messages 101");
        assert_eq!(c.storm_of(0, 2), (3, Some(51)));
        assert_eq!(c.storm_of(1, 2), (2, Some(50)));
    }
}
