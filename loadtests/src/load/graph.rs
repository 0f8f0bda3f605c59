//! The virtual users' follow graph: a power law, as on real social networks, where a few
//! users are followed by many and most by few, and a few follow many.
//!
//! Popularity is Zipf: the user of rank `r` (0 = most popular) is chosen as a followee with
//! weight `1 / (r + 1)^s`. Out-degrees are Pareto with shape 2 (mean twice the minimum),
//! capped so a user follows at most half the others. Everything comes from one seed, so every
//! process of a run (and every rerun) builds the same graph without sending it around.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Parameters of a graph; [`Shape::default`] is what the presets use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Zipf exponent of popularity.
    pub zipf_s: f64,
    /// Mean number of users each user follows (at least 2: the Pareto minimum is half of it).
    pub mean_follows: f64,
}

impl Default for Shape {
    fn default() -> Self {
        Self { zipf_s: 1.0, mean_follows: 20.0 }
    }
}

/// Zipf sampling over `0..n` by inverse CDF: one binary search per draw.
#[derive(Debug, Clone)]
pub struct Popularity {
    cumulative: Vec<f64>,
}

impl Popularity {
    pub fn zipf(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|r| {
                total += 1.0 / ((r + 1) as f64).powf(s);
                total
            })
            .collect();
        Self { cumulative }
    }

    pub fn len(&self) -> usize {
        self.cumulative.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cumulative.is_empty()
    }

    /// A rank, the popular ones more often.
    pub fn draw(&self, rng: &mut impl Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.random::<f64>() * total;
        self.cumulative.partition_point(|&c| c <= x).min(self.cumulative.len().saturating_sub(1))
    }
}

/// Who follows whom: `follows[u]` are the users `u` follows, distinct and never `u`.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowGraph {
    pub follows: Vec<Vec<u32>>,
}

impl FollowGraph {
    pub fn power_law(users: usize, shape: Shape, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let popularity = Popularity::zipf(users, shape.zipf_s);
        let min = (shape.mean_follows / 2.0).max(1.0);
        let cap = users.saturating_sub(1) / 2;
        let follows = (0..users)
            .map(|u| {
                // Pareto(shape 2) by inverse CDF; `1 - u` is in (0, 1], so no division by 0.
                let degree = (min / (1.0 - rng.random::<f64>()).sqrt()) as usize;
                let degree = degree.min(cap);
                let mut chosen: Vec<u32> = Vec::with_capacity(degree);
                // Rejection of repeats and of oneself; at most half the users are wanted, so
                // this ends quickly even for the heaviest followers.
                while chosen.len() < degree {
                    let v = popularity.draw(&mut rng);
                    if v != u && !chosen.contains(&(v as u32)) {
                        chosen.push(v as u32);
                    }
                }
                chosen
            })
            .collect();
        Self { follows }
    }

    pub fn edges(&self) -> usize {
        self.follows.iter().map(Vec::len).sum()
    }

    /// How many follow each user.
    pub fn followers(&self) -> Vec<u32> {
        let mut count = vec![0u32; self.follows.len()];
        for v in self.follows.iter().flatten() {
            count[*v as usize] += 1;
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_graph_and_another_seed_another() {
        let a = FollowGraph::power_law(2_000, Shape::default(), 7);
        assert_eq!(a, FollowGraph::power_law(2_000, Shape::default(), 7));
        assert_ne!(a, FollowGraph::power_law(2_000, Shape::default(), 8));
    }

    #[test]
    fn nobody_follows_themselves_or_anyone_twice() {
        let g = FollowGraph::power_law(3_000, Shape::default(), 1);
        for (u, follows) in g.follows.iter().enumerate() {
            let mut sorted = follows.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), follows.len(), "user {u} follows someone twice");
            assert!(!follows.contains(&(u as u32)), "user {u} follows themselves");
            assert!(follows.len() <= 1_499);
        }
    }

    #[test]
    fn the_mean_out_degree_is_near_the_shape_s_and_followers_are_heavily_skewed() {
        let n = 10_000;
        let g = FollowGraph::power_law(n, Shape::default(), 3);
        let mean = g.edges() as f64 / n as f64;
        // Pareto(2)'s mean converges slowly (infinite variance): a wide band.
        assert!((16.0..26.0).contains(&mean), "mean out-degree {mean}");
        let mut followers = g.followers();
        followers.sort_unstable_by(|a, b| b.cmp(a));
        let top_1_percent: u64 = followers[..n / 100].iter().map(|&c| u64::from(c)).sum();
        // Under Zipf(1) over 10,000 ranks the top 1 % hold about half of all weight; a
        // uniform choice would give them 1 %.
        let share = top_1_percent as f64 / g.edges() as f64;
        assert!(share > 0.35, "top 1 % of users hold {share:.2} of follows");
        let median = followers[n / 2];
        assert!(median < 10, "the median user has {median} followers");
    }

    #[test]
    fn tiny_populations_are_handled() {
        assert_eq!(FollowGraph::power_law(0, Shape::default(), 1).edges(), 0);
        assert_eq!(FollowGraph::power_law(1, Shape::default(), 1).edges(), 0);
        let g = FollowGraph::power_law(3, Shape::default(), 1);
        assert!(g.follows.iter().all(|f| f.len() <= 1));
    }

    #[test]
    fn zipf_draws_favour_low_ranks_in_proportion() {
        let p = Popularity::zipf(100, 1.0);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut hits = [0u32; 100];
        for _ in 0..100_000 {
            hits[p.draw(&mut rng)] += 1;
        }
        // Rank 0 has weight 1 and rank 1 weight 1/2: about twice the draws.
        let ratio = f64::from(hits[0]) / f64::from(hits[1]);
        assert!((1.8..2.2).contains(&ratio), "rank 0 / rank 1 = {ratio}");
        assert!(hits[99] > 0);
    }
}
