//! Who is whose buddy: full mesh, ring, hub and spokes, or random with a minimum degree,
//! as undirected edges between node indexes. Pure and deterministic (the random topology
//! takes its seed), so a run can be repeated.

use std::collections::BTreeSet;
use std::fmt;

/// A buddy topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Every node is every other node's buddy.
    FullMesh,
    /// Node `i` is the buddy of `i - 1` and `i + 1` (wrapping).
    Ring,
    /// Node 0 is everyone's buddy; the others only its.
    HubAndSpokes,
    /// A ring plus random edges until every node has at least `degree` buddies.
    Random {
        /// The least number of buddies per node.
        degree: usize,
        /// The generator's seed.
        seed: u64,
    },
}

impl Topology {
    /// Parses `mesh`, `ring`, `hub`, `random:K` or `random:K:SEED`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("mesh" | "full-mesh"), None, None, None) => Ok(Self::FullMesh),
            (Some("ring"), None, None, None) => Ok(Self::Ring),
            (Some("hub" | "hub-and-spokes"), None, None, None) => Ok(Self::HubAndSpokes),
            (Some("random"), Some(degree), seed, None) => {
                let degree = degree.parse().map_err(|_| format!("random:K needs a number, not {degree:?}"))?;
                let seed = match seed {
                    Some(seed) => seed.parse().map_err(|_| format!("random:K:SEED needs a number, not {seed:?}"))?,
                    None => 1,
                };
                Ok(Self::Random { degree, seed })
            }
            _ => Err(format!("unknown topology {text:?}: use mesh, ring, hub, random:K or random:K:SEED")),
        }
    }

    /// The buddy relations among `n` nodes, each `(a, b)` with `a < b`, sorted.
    pub fn edges(&self, n: usize) -> Vec<(usize, usize)> {
        let mut edges = BTreeSet::new();
        let add = |a: usize, b: usize, edges: &mut BTreeSet<(usize, usize)>| {
            if a != b {
                edges.insert((a.min(b), a.max(b)));
            }
        };
        match *self {
            Self::FullMesh => {
                for a in 0..n {
                    for b in a + 1..n {
                        add(a, b, &mut edges);
                    }
                }
            }
            Self::Ring => {
                for a in 0..n {
                    add(a, (a + 1) % n, &mut edges);
                }
            }
            Self::HubAndSpokes => {
                for b in 1..n {
                    add(0, b, &mut edges);
                }
            }
            Self::Random { degree, seed } => {
                for a in 0..n {
                    add(a, (a + 1) % n, &mut edges);
                }
                let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut next = move || {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state
                };
                let target = degree.min(n.saturating_sub(1));
                for a in 0..n {
                    let mut tries = 0;
                    while edges.iter().filter(|(x, y)| *x == a || *y == a).count() < target && tries < 10 * n {
                        let b = (next() % n as u64) as usize;
                        add(a, b, &mut edges);
                        tries += 1;
                    }
                }
            }
        }
        edges.into_iter().collect()
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FullMesh => f.write_str("mesh"),
            Self::Ring => f.write_str("ring"),
            Self::HubAndSpokes => f.write_str("hub"),
            Self::Random { degree, seed } => write!(f, "random:{degree}:{seed}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn degrees(edges: &[(usize, usize)], n: usize) -> Vec<usize> {
        (0..n).map(|i| edges.iter().filter(|(a, b)| *a == i || *b == i).count()).collect()
    }

    #[test]
    fn shapes_have_the_expected_edges() {
        assert_eq!(Topology::FullMesh.edges(5).len(), 10);
        assert_eq!(Topology::Ring.edges(5), vec![(0, 1), (0, 4), (1, 2), (2, 3), (3, 4)]);
        assert_eq!(degrees(&Topology::HubAndSpokes.edges(5), 5), vec![4, 1, 1, 1, 1]);
        let random = Topology::Random { degree: 3, seed: 7 }.edges(20);
        assert!(degrees(&random, 20).iter().all(|d| *d >= 3), "{random:?}");
        assert_eq!(random, Topology::Random { degree: 3, seed: 7 }.edges(20), "deterministic");
        assert!(Topology::Ring.edges(2) == vec![(0, 1)]);
    }

    #[test]
    fn parses_what_it_prints() {
        for text in ["mesh", "ring", "hub", "random:3:9"] {
            assert_eq!(Topology::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Topology::parse("random:4").unwrap(), Topology::Random { degree: 4, seed: 1 });
        assert!(Topology::parse("star").is_err());
        assert!(Topology::parse("random:x").is_err());
    }
}
