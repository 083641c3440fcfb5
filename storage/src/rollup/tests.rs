//! Rollup blob encoding: round trip, order independence, filters, and damaged bytes.

use proptest::prelude::*;

use super::blob::{for_each_row, ErrorExample};
use super::*;

fn dims_strategy(cube: Cube) -> impl Strategy<Value = Dims<Box<str>>> {
    let val = prop::option::of(prop_oneof![
        Just("tools/call".to_string()),
        Just("search".to_string()),
        Just("ünï".to_string()),
        // Long enough for a two-byte length: the string table is then read string by string.
        Just(format!("long-ü-{}", "x".repeat(130))),
        "[a-z=+-]{0,6}",
    ]);
    (any::<bool>(), prop::array::uniform7(val)).prop_map(move |(client, mut v)| {
        if cube == Cube::Tools {
            v[D_USER] = None;
        }
        Dims {
            side: if client { Side::Client } else { Side::Server },
            v: v.map(|o| o.map(String::into_boxed_str)),
        }
    })
}

/// What a row of `cube` keeps (`total`: a blob total, tools cube) - other sketches stay empty.
fn stats_strategy(cube: Cube, total: bool) -> impl Strategy<Value = Stats> {
    (
        prop::collection::vec(
            (
                0u64..1 << 40,
                prop_oneof![Just(1.0), Just(2.0), Just(1.0 / 0.3)],
            ),
            1..20,
        ),
        prop::collection::vec(any::<u64>(), 0..30),
        prop::option::of((0u64..60_000_000_000, any::<[u8; 16]>(), any::<[u8; 8]>())),
        0u64..60_000_000_000,
    )
        .prop_map(move |(durs, hashes, example, last)| {
            let mut s = Stats {
                spans: durs.len() as u64,
                last_unix_nano: START + last,
                error_example: example.map(|(t, trace_id, span_id)| ErrorExample {
                    start_unix_nano: START + t,
                    trace_id,
                    span_id,
                }),
                ..Stats::default()
            };
            for (d, w) in durs {
                s.calls += w;
                s.duration_nanos += w * d as f64;
                s.latency.add(d, w);
            }
            s.error_spans = s.spans / 2;
            s.errors = s.calls / 3.0;
            for h in hashes {
                if total || cube == Cube::Users {
                    s.sessions.insert(h);
                }
                if total {
                    s.users.insert(h.rotate_left(7));
                }
            }
            s
        })
}

const START: u64 = 28_000_000 * MINUTE_NANOS;

fn blob_strategy(cube: Cube) -> impl Strategy<Value = Blob> {
    let totals = if cube == Cube::Tools {
        prop::array::uniform2(prop::option::of(stats_strategy(cube, true))).boxed()
    } else {
        Just([None, None]).boxed()
    };
    (
        prop::collection::vec((dims_strategy(cube), stats_strategy(cube, false)), 0..12),
        totals,
    )
        .prop_map(|(rows, totals)| {
            let mut b = Blob {
                totals,
                ..Blob::default()
            };
            for (d, s) in rows {
                b.rows.insert(d, s);
            }
            b
        })
}

fn cube_strategy() -> impl Strategy<Value = Cube> {
    prop_oneof![Just(Cube::Tools), Just(Cube::Users)]
}

proptest! {
    #[test]
    fn blob_round_trips((cube, blob) in cube_strategy().prop_flat_map(|c| (Just(c), blob_strategy(c)))) {
        let bytes = blob.encode(cube, START);
        let back = Blob::decode(&bytes, cube, START).unwrap();
        prop_assert_eq!(&back, &blob);
        // Equal blobs encode to equal bytes, whatever the hash map order.
        prop_assert_eq!(back.encode(cube, START), bytes);
    }

    #[test]
    fn filters_see_exactly_the_matching_rows(
        (cube, blob) in cube_strategy().prop_flat_map(|c| (Just(c), blob_strategy(c))),
        slot in 0..DIMS,
        pick in any::<prop::sample::Index>(),
    ) {
        let bytes = blob.encode(cube, START);
        let values: Vec<&str> = blob.rows.keys().filter_map(|d| d.v[slot].as_deref()).collect();
        let want = if values.is_empty() { "absent" } else { values[pick.index(values.len())] };
        let mut filter = NO_FILTER;
        filter[slot] = Some(want);
        let mut seen = 0;
        for_each_row(&bytes, cube, START, &filter, |r| {
            assert_eq!(r.dims.v[slot], Some(want));
            seen += 1;
            Ok(())
        }).unwrap();
        let expected = blob.rows.keys().filter(|d| d.v[slot].as_deref() == Some(want)).count();
        prop_assert_eq!(seen, expected);
    }

    #[test]
    fn damaged_blobs_are_errors_not_panics(
        (cube, blob) in cube_strategy().prop_flat_map(|c| (Just(c), blob_strategy(c))),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        junk in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let bytes = blob.encode(cube, START);
        let _ = Blob::decode(&bytes[..cut.index(bytes.len())], cube, START);
        let mut flipped = bytes.clone();
        let i = flip.index(flipped.len());
        flipped[i] ^= 0x5a;
        let _ = Blob::decode(&flipped, cube, START);
        let _ = Blob::decode(&junk, cube, START);
        for input in [&bytes[..cut.index(bytes.len())], &flipped[..], &junk[..]] {
            let _ = blob.clone().merge_encoded(input, cube, START);
        }
    }

    #[test]
    fn merge_encoded_equals_decode_then_merge(
        (cube, a, b, shared) in cube_strategy().prop_flat_map(|c| (
            Just(c),
            blob_strategy(c),
            blob_strategy(c),
            prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        )),
    ) {
        // `b` also holds stats under some of `a`'s dimensions: rows are both merged and added.
        let mut b = b;
        let a_dims: Vec<Dims<Box<str>>> = a.rows.keys().cloned().collect();
        let b_stats: Vec<Stats> = b.rows.values().cloned().collect();
        if !a_dims.is_empty() && !b_stats.is_empty() {
            for ix in &shared {
                b.rows.insert(
                    a_dims[ix.index(a_dims.len())].clone(),
                    b_stats[ix.index(b_stats.len())].clone(),
                );
            }
        }
        let bytes = b.encode(cube, START);
        let mut want = a.clone();
        want.merge(Blob::decode(&bytes, cube, START).unwrap());
        let mut got = a;
        got.merge_encoded(&bytes, cube, START).unwrap();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn merge_is_order_independent(
        (_cube, a, b) in cube_strategy().prop_flat_map(|c| (Just(c), blob_strategy(c), blob_strategy(c))),
    ) {
        let mut ab = a.clone();
        ab.merge(b.clone());
        let mut ba = b;
        ba.merge(a);
        // Sums may differ in the last bit with the order of float additions; everything else is equal.
        prop_assert_eq!(ab.rows.len(), ba.rows.len());
        for (d, s) in &ab.rows {
            let t = &ba.rows[d];
            prop_assert_eq!(s.spans, t.spans);
            prop_assert!((s.calls - t.calls).abs() <= 1e-9 * s.calls.max(1.0));
            prop_assert_eq!(s.error_example, t.error_example);
            prop_assert_eq!(&s.sessions, &t.sessions);
            prop_assert_eq!(&s.users, &t.users);
            prop_assert_eq!(s.last_unix_nano, t.last_unix_nano);
        }
    }
}

#[test]
fn keys_sort_by_owner_then_resolution_then_time() {
    let k = |server, res, start_minute| BlobKey {
        org: 3,
        server,
        env: Env::Live,
        cube: Cube::Tools,
        res,
        start_minute,
    };
    let mut keys = vec![
        k(2, Res::Minute, 5),
        k(1, Res::Day, 0),
        k(1, Res::Minute, 9),
        k(1, Res::Hour, 60),
    ];
    keys.sort_by_key(|k| k.encode());
    assert_eq!(
        keys,
        vec![
            k(1, Res::Minute, 9),
            k(1, Res::Hour, 60),
            k(1, Res::Day, 0),
            k(2, Res::Minute, 5)
        ]
    );
    for key in keys {
        assert_eq!(BlobKey::decode(&key.encode()), Some(key));
    }
}
