//! Graceful lease handoff (KCL 3.x style, `checkpointOwner`): workers join and leave a
//! stream under steady load, and every record reaches Pulsar exactly once — without
//! Pulsar deduplication and without waiting for the workers to converge before the load
//! starts. A steal asks the owner for the lease; the owner drains, writes its final
//! checkpoint and hands the lease over; a worker stopped with SIGTERM hands each lease to a
//! live worker. The time each moved shard went unread is measured from the workers' logs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::support::*;
use aws_sdk_dynamodb::types::AttributeValue;

const LONG: Duration = Duration::from_secs(180);

/// Quick lease settings (as the coordination tests'), graceful handoff with its default
/// timeout (30 s) and assignment check (500 ms). `max_steal: 1`, the KCL's.
const LEASES: &str = "leases:\n  duration: 5s\n  renew_interval: 1s\n  take_interval: 500ms\n";

/// One lease as the table holds it.
#[derive(Debug, Clone)]
struct Item {
    owner: Option<String>,
    checkpoint_owner: Option<String>,
}

async fn lease_items(table: &str) -> HashMap<String, Item> {
    let out = dynamodb()
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await;
    let Ok(out) = out else { return HashMap::new() };
    let s = |i: &HashMap<String, AttributeValue>, k: &str| match i.get(k) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    };
    out.items()
        .iter()
        .filter_map(|i| {
            let key = s(i, "leaseKey")?;
            Some((
                key,
                Item {
                    owner: s(i, "leaseOwner"),
                    checkpoint_owner: s(i, "checkpointOwner"),
                },
            ))
        })
        .collect()
}

/// The worker id a host logged at start.
async fn worker_id(h: &mut Host) -> String {
    h.wait_log("worker started", LONG).await;
    h.log()
        .lines()
        .find(|l| l.contains("worker started"))
        .and_then(|l| field(l, "worker"))
        .expect("worker id in the log")
}

/// `name=value` of a human-format log line.
fn field(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let value = line[start..].split_whitespace().next()?;
    Some(value.trim_matches('"').to_string())
}

fn time_of(line: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(line.split_whitespace().next()?).ok()
}

/// Waits until `workers` own every lease, as many each as `counts` says in some order,
/// with no handoff pending, and each owner reads the shards it owns (its log shows a pass
/// started after it took the lease).
async fn wait_split(table: &str, what: &str, workers: &[(&str, &Host)], counts: &[usize]) {
    let mut want = counts.to_vec();
    want.sort();
    wait_for(what, LONG, || {
        let table = table.to_string();
        let logs: HashMap<String, String> = workers
            .iter()
            .map(|(w, h)| (w.to_string(), h.log()))
            .collect();
        let want = want.clone();
        async move {
            let items = lease_items(&table).await;
            let mut per: HashMap<String, usize> = HashMap::new();
            for (key, i) in &items {
                if i.checkpoint_owner.is_some() {
                    return None;
                }
                let owner = i.owner.clone()?;
                let log = logs.get(&owner)?;
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|l| field(l, "shard").as_deref() == Some(key.as_str()))
                    .collect();
                let took = lines.iter().rposition(|l| l.contains("took lease"))?;
                if !lines[took..].iter().any(|l| l.contains("processing shard")) {
                    return None;
                }
                *per.entry(owner).or_default() += 1;
            }
            let mut got: Vec<usize> = per.into_values().collect();
            got.sort();
            (got == want).then_some(())
        }
    })
    .await;
}

/// One moved shard: when its previous owner stopped reading it (handoff asked for, or
/// SIGTERM), when it handed the lease over (after its final checkpoint), and when the new
/// owner started reading it.
#[derive(Debug)]
struct Move {
    shard: String,
    cause: &'static str,
    unread_from_stop: Duration,
    unread_from_release: Duration,
}

/// The moves in the workers' logs.
fn moves(logs: &[String]) -> Vec<Move> {
    let mut out = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let lines: Vec<&str> = log.lines().collect();
        let sigterm = lines
            .iter()
            .find(|l| l.contains("shutting down: draining"))
            .and_then(|l| time_of(l));
        for l in lines
            .iter()
            .filter(|l| l.contains("released lease: handed over"))
        {
            let (Some(shard), Some(released)) = (field(l, "shard"), time_of(l)) else {
                continue;
            };
            let asked = lines
                .iter()
                .filter(|x| {
                    x.contains("lease handoff requested")
                        && field(x, "shard").as_deref() == Some(&shard)
                })
                .filter_map(|x| time_of(x))
                .rfind(|t| *t <= released);
            let (cause, stopped) = match (sigterm, asked) {
                (Some(s), _) if released >= s => ("SIGTERM", s),
                (_, Some(a)) => ("steal", a),
                _ => continue,
            };
            // The first pass the new owner started on that shard after the release.
            let started = logs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, other)| other.lines())
                .filter(|x| {
                    x.contains("processing shard") && field(x, "shard").as_deref() == Some(&shard)
                })
                .filter_map(time_of)
                .filter(|t| *t >= released)
                .min();
            let Some(started) = started else { continue };
            out.push(Move {
                shard,
                cause,
                unread_from_stop: started.duration_since(stopped).unwrap_or_default(),
                unread_from_release: started.duration_since(released).unwrap_or_default(),
            });
        }
    }
    out
}

/// 2 workers on an 8-shard stream under steady load, a third and a fourth join (each
/// steals its share by graceful handoff), then the first two leave with SIGTERM (each hands
/// its leases to the survivors): 0 records lost, 0 delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_join_and_leave_under_load_without_loss_or_duplicates() {
    let app = unique("handoff");
    create_stream(&app, 8).await;
    let topic = format!("persistent://public/default/{app}");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let config = stack_config(&app, &app, &topic, "").replace("leases:\n  duration: 3s\n", LEASES);
    let path = write_config(&config);

    // Steady load: 16 records every 100 ms until the workers are done moving.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stream, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            let mut all = Vec::new();
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                all.extend(put_records(&stream, &records(&format!("r{round}"), 16)).await);
                round += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            all
        })
    };

    let started = tokio::time::Instant::now();
    let mut a = Host::start(&path);
    let wa = worker_id(&mut a).await;
    wait_split(&app, "a to hold all 8 leases", &[(&wa, &a)], &[8]).await;
    collector.wait_for(100, LONG).await;

    let mut b = Host::start(&path);
    let wb = worker_id(&mut b).await;
    wait_split(&app, "a 4/4 split", &[(&wa, &a), (&wb, &b)], &[4, 4]).await;
    println!("a, b: 4/4 after {:?}", started.elapsed());

    let mut c = Host::start(&path);
    let mut d = Host::start(&path);
    let (wc, wd) = (worker_id(&mut c).await, worker_id(&mut d).await);
    let all = [
        (wa.as_str(), &a),
        (wb.as_str(), &b),
        (wc.as_str(), &c),
        (wd.as_str(), &d),
    ];
    wait_split(&app, "a 2/2/2/2 split", &all, &[2, 2, 2, 2]).await;
    println!("a, b, c, d: 2/2/2/2 after {:?}", started.elapsed());

    a.signal("TERM");
    assert_eq!(a.wait_exit(LONG).await, Some(0), "log:\n{}", a.log());
    let bcd = [(wb.as_str(), &b), (wc.as_str(), &c), (wd.as_str(), &d)];
    wait_split(&app, "a's leases with b, c and d", &bcd, &[2, 3, 3]).await;
    println!("b, c, d: 3/3/2 after {:?}", started.elapsed());

    b.signal("TERM");
    assert_eq!(b.wait_exit(LONG).await, Some(0), "log:\n{}", b.log());
    let cd = [(wc.as_str(), &c), (wd.as_str(), &d)];
    wait_split(&app, "a 4/4 split of c and d", &cd, &[4, 4]).await;
    println!("c, d: 4/4 after {:?}", started.elapsed());

    stop.store(true, Ordering::Relaxed);
    let puts = load.await.expect("load");
    collector.wait_for_distinct(puts.len(), LONG).await;
    for h in [&c, &d] {
        h.signal("TERM");
    }
    for h in [&mut c, &mut d] {
        assert_eq!(h.wait_exit(LONG).await, Some(0), "log:\n{}", h.log());
    }

    let logs: Vec<String> = [&a, &b, &c, &d].iter().map(|h| h.log()).collect();
    let count = |what: &str| logs.iter().map(|l| l.matches(what).count()).sum::<usize>();
    let moved = moves(&logs);
    for m in &moved {
        println!(
            "moved {} ({}): unread {:?} from the old owner's stop, {:?} from its release",
            m.shard, m.cause, m.unread_from_stop, m.unread_from_release
        );
    }
    let t = tally("handoff", &puts, &collector.all());
    let lease_events = logs
        .iter()
        .zip(["a", "b", "c", "d"])
        .map(|(log, name)| {
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("lease") || l.contains("processing shard"))
                .collect();
            format!("{name}:\n{}", lines.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(t.lost, 0, "records lost\n{lease_events}");
    assert_eq!(t.duplicated, 0, "records delivered twice\n{lease_events}");
    // Every steal was a graceful handoff, none timed out, and no worker lost a lease;
    // b took 4 and c and d 2 each by steals, a handed 2 over at SIGTERM and b 3.
    assert!(count("asked for lease") >= 6, "{lease_events}");
    assert_eq!(count("HandoffTimedOut"), 0, "{lease_events}");
    assert_eq!(count("lease lost"), 0, "{lease_events}");
    let steals: Vec<&Move> = moved.iter().filter(|m| m.cause == "steal").collect();
    let sigterms: Vec<&Move> = moved.iter().filter(|m| m.cause == "SIGTERM").collect();
    // At SIGTERM a and b give up 2 + 3 leases: each handed to a live worker, or released
    // (taken at the next round) when the stopping worker's scan saw no live receiver for
    // it. Only the handed ones are timed as moves.
    let given_up_at_sigterm: usize = logs
        .iter()
        .filter_map(|l| l.find("shutting down: draining").map(|at| &l[at..]))
        .map(|after| after.matches("released lease").count())
        .sum();
    assert!(
        steals.len() >= 6 && !sigterms.is_empty() && given_up_at_sigterm >= 5,
        "{given_up_at_sigterm} given up at SIGTERM; {moved:?}\n{lease_events}"
    );
    let worst = |ms: &[&Move], f: fn(&Move) -> Duration| ms.iter().map(|m| f(m)).max();
    println!(
        "worst unread time: steal {:?} from stop / {:?} from release; SIGTERM {:?} from the signal / {:?} from release",
        worst(&steals, |m| m.unread_from_stop),
        worst(&steals, |m| m.unread_from_release),
        worst(&sigterms, |m| m.unread_from_stop),
        worst(&sigterms, |m| m.unread_from_release),
    );
    // Goal under 1 s; bounded loosely for a loaded 2-core machine.
    for m in &moved {
        assert!(
            m.unread_from_release < Duration::from_secs(3),
            "{m:?} unread too long\n{lease_events}"
        );
    }
}
