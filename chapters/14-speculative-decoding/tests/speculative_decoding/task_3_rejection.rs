//! Task 3: the rejection rule keeps the target's distribution, whatever the draft.

use mlx_rs::{ops::indexing::argmax_axis, random, Array, Dtype};
use speculative_decoding::{verify_greedy, verify_sampled, Verdict};
use test_support::{expect_ok as ok, random_array};

const V: usize = 6;
const K: usize = 3;
const TRIALS: usize = 4000;
/// The chi-square statistic of a correct rule stays below this at every position: the 0.9999
/// quantile of chi-square with V - 1 = 5 degrees of freedom is 25.7. Each wrong rule below
/// exceeds it by far (the test checks that too).
const BOUND: f64 = 25.0;

/// The target's distributions `p_0..p_K`: row `i` follows the first `i` draft tokens (fixed
/// rows: the test does not need them to depend on the draft).
const TARGET: [[f32; V]; K + 1] = [
    [0.30, 0.25, 0.20, 0.15, 0.07, 0.03],
    [0.05, 0.10, 0.40, 0.20, 0.15, 0.10],
    [0.50, 0.10, 0.10, 0.10, 0.10, 0.10],
    [0.10, 0.20, 0.30, 0.20, 0.10, 0.10],
];
/// The drafter's `q_0..q_{K-1}`, which the draft tokens are drawn from. Probability kept per
/// position, sum of min(p, q): 0.75, 0.85, 0.80.
const DRAFTER: [[f32; V]; K] = [
    [0.15, 0.30, 0.10, 0.25, 0.15, 0.05],
    [0.10, 0.10, 0.30, 0.30, 0.10, 0.10],
    [0.30, 0.20, 0.10, 0.20, 0.10, 0.10],
];

/// A seeded stream of uniform numbers in [0, 1) (splitmix64), independent of MLX's.
struct Uniform(u64);

impl Uniform {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }

    /// A draw from `probabilities`.
    fn draw(&mut self, probabilities: &[f32]) -> usize {
        let u = self.next();
        let mut total = 0.0;
        for (token, &p) in probabilities.iter().enumerate() {
            total += p;
            if u < total {
                return token;
            }
        }
        probabilities.len() - 1
    }
}

fn rows<const R: usize>(rows: &[[f32; V]; R]) -> Array {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Array::from_slice(&flat, &[R as i32, V as i32])
}

/// Drafts of K tokens, each drawn from its row of [`DRAFTER`].
fn drafts() -> Vec<Vec<u32>> {
    let mut uniform = Uniform(2024);
    (0..TRIALS)
        .map(|_| DRAFTER.iter().map(|q| uniform.draw(q) as u32).collect())
        .collect()
}

/// How often each token came out at each position: position `j` counts the trials that got
/// that far (every draft token before it kept).
type Counts = [[usize; V]; K + 1];

fn count(counts: &mut Counts, draft: &[u32], verdict: Verdict) {
    for (position, &token) in draft[..verdict.accepted]
        .iter()
        .chain([&verdict.next])
        .enumerate()
    {
        counts[position][token as usize] += 1;
    }
}

/// The largest chi-square statistic of the counts against [`TARGET`] over the positions, and
/// its position.
fn worst_chi_square(counts: &Counts) -> (usize, f64) {
    (0..=K)
        .map(|position| {
            let total: usize = counts[position].iter().sum();
            let statistic = (0..V)
                .map(|token| {
                    let expected = total as f64 * TARGET[position][token] as f64;
                    let seen = counts[position][token] as f64;
                    (seen - expected).powi(2) / expected
                })
                .sum::<f64>();
            (position, statistic)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("K + 1 positions")
}

/// Where a rule under test keeps a draft token `x` at position `i` with a uniform draw `u`, and
/// what it draws otherwise.
type Rule = fn(i: usize, x: usize, u: f32, uniform: &mut Uniform) -> Option<usize>;

/// Runs a rule written here (not the learner's) on the same drafts.
fn simulate(rule: Rule) -> Counts {
    let mut uniform = Uniform(7);
    let mut counts = [[0; V]; K + 1];
    for draft in drafts() {
        let mut accepted = 0;
        let mut next = None;
        for (i, &x) in draft.iter().enumerate() {
            let u = uniform.next();
            if let Some(token) = rule(i, x as usize, u, &mut uniform) {
                next = Some(token);
                break;
            }
            accepted += 1;
        }
        let next = next.unwrap_or_else(|| uniform.draw(&TARGET[K]));
        let verdict = Verdict {
            accepted,
            next: next as u32,
        };
        count(&mut counts, &draft, verdict);
    }
    counts
}

/// The residual `max(0, p_i - q_i)`, normalized.
fn residual(i: usize) -> Vec<f32> {
    let residual: Vec<f32> = (0..V)
        .map(|t| (TARGET[i][t] - DRAFTER[i][t]).max(0.0))
        .collect();
    let mass: f32 = residual.iter().sum();
    residual.iter().map(|r| r / mass).collect()
}

#[test]
fn task_3_accepted_tokens_follow_the_target_distribution() {
    let (target, drafter) = (rows(&TARGET), rows(&DRAFTER));
    let mut counts = [[0; V]; K + 1];
    for (trial, draft) in drafts().iter().enumerate() {
        let key = ok(random::key(trial as u64), "random::key");
        let verdict = ok(
            verify_sampled(&target, &drafter, draft, &key),
            "verify_sampled",
        );
        assert!(
            verdict.accepted <= K && (verdict.next as usize) < V,
            "trial {trial}: verdict {verdict:?} out of range for a draft of {K} over {V} tokens"
        );
        count(&mut counts, draft, verdict);
    }
    let (position, statistic) = worst_chi_square(&counts);
    assert!(
        statistic < BOUND,
        "the tokens at position {position} do not follow the target's distribution: chi-square {statistic:.1} >= {BOUND} \
         (counts {:?}, target {:?})",
        counts[position],
        TARGET[position]
    );
    assert_wrong_rules_fail_the_bound();
}

/// The bound has power: rules that look plausible but change the distribution fail it (checked
/// after your rule passes it, in the test above).
fn assert_wrong_rules_fail_the_bound() {
    let correct: Rule =
        |i, x, u, uniform| (u * DRAFTER[i][x] >= TARGET[i][x]).then(|| uniform.draw(&residual(i)));
    let always_accept: Rule = |_, _, _, _| None;
    let redraw_from_target: Rule =
        |i, x, u, uniform| (u * DRAFTER[i][x] >= TARGET[i][x]).then(|| uniform.draw(&TARGET[i]));
    let keep_if_target_likes_it_more: Rule =
        |i, x, _, uniform| (DRAFTER[i][x] > TARGET[i][x]).then(|| uniform.draw(&residual(i)));
    let (_, statistic) = worst_chi_square(&simulate(correct));
    assert!(
        statistic < BOUND,
        "the test's own correct rule fails: {statistic:.1}"
    );
    for (name, rule) in [
        ("always accept", always_accept),
        ("redraw from p instead of the residual", redraw_from_target),
        ("keep when p >= q, no coin", keep_if_target_likes_it_more),
    ] {
        let (position, statistic) = worst_chi_square(&simulate(rule));
        assert!(
            statistic > 4.0 * BOUND,
            "the wrong rule \"{name}\" passes: chi-square {statistic:.1} at position {position}"
        );
    }
}

#[test]
fn task_3_a_drafter_with_the_target_distribution_is_always_accepted() {
    let target = rows(&TARGET);
    let same: [[f32; V]; K] = [TARGET[0], TARGET[1], TARGET[2]];
    let drafter = rows(&same);
    let mut uniform = Uniform(11);
    for trial in 0..50 {
        let draft: Vec<u32> = same.iter().map(|q| uniform.draw(q) as u32).collect();
        let key = ok(random::key(trial), "random::key");
        let verdict = ok(
            verify_sampled(&target, &drafter, &draft, &key),
            "verify_sampled",
        );
        assert_eq!(
            verdict.accepted, K,
            "trial {trial}: p == q must keep every draft token ({draft:?})"
        );
    }
}

/// One-hot distributions (a greedy target and a greedy drafter) make the rule greedy
/// verification.
#[test]
fn task_3_one_hot_distributions_give_greedy_verification() {
    let vocab = 16;
    for (seed, k) in [(1u64, 0usize), (2, 1), (3, 4), (4, 4), (5, 6)] {
        let logits = random_array(&[k as i32 + 1, vocab], Dtype::Float32, seed);
        let best = argmax_axis(&logits, -1, None).and_then(|a| a.as_dtype(Dtype::Uint32));
        let best = ok(best, "argmax").as_slice::<u32>().to_vec();
        // Agree with the argmax for the first `seed % (k + 1)` tokens, then differ.
        let agree = seed as usize % (k + 1);
        let draft: Vec<u32> = (0..k)
            .map(|i| {
                if i < agree {
                    best[i]
                } else {
                    (best[i] + 3) % vocab as u32
                }
            })
            .collect();
        let one_hot = |tokens: &[u32]| {
            let mut flat = vec![0.0f32; tokens.len() * vocab as usize];
            for (row, &token) in tokens.iter().enumerate() {
                flat[row * vocab as usize + token as usize] = 1.0;
            }
            Array::from_slice(&flat, &[tokens.len() as i32, vocab])
        };
        let key = ok(random::key(seed), "random::key");
        let sampled = ok(
            verify_sampled(&one_hot(&best), &one_hot(&draft), &draft, &key),
            "verify_sampled",
        );
        let greedy = ok(verify_greedy(&logits, &draft), "verify_greedy");
        assert_eq!(sampled, greedy, "draft {draft:?}, argmax {best:?}");
    }
}

#[test]
fn task_3_verify_sampled_rejects_shapes_that_do_not_fit_the_draft() {
    let (target, drafter) = (rows(&TARGET), rows(&DRAFTER));
    let key = ok(random::key(0), "random::key");
    assert!(
        verify_sampled(&target, &drafter, &[1, 2], &key).is_err(),
        "a draft of 2 tokens with 4 target rows and 3 drafter rows"
    );
}
