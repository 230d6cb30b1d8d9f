//! Task 5 in the server's batches: chapter 13's paged scheduler with a [`BatchSpeculator`]
//! gives every request, token for token, what plain greedy decoding with chapter 8's cache gives
//! it alone, however rows join, leave and accept different numbers of tokens per step; its
//! blocks follow the tokens each row kept.

use crate::harness::{
    load_model, options, other_tiny, plain_greedy, reference_sequence, tiny_model, tokenizer_at,
    Drafting, TINY_VOCAB,
};
use mlx_rs::ops::indexing::IndexOp;
use rstest::rstest;
use speculative_decoding::{
    load_model as load_quantized, probabilities, BatchDrafting, BatchSpeculator, Batcher, Event,
    Kernel, Model, NgramDrafter, PagedConfig, PagedScheduler, Quantization, Request,
    SamplingParams, SchedulerConfig, SharedConstraint, TokenConstraint, BLOCK_SIZE,
};
use std::collections::HashMap;
use test_support::{expect_ok as ok, fetched_model_dir, fixture_path};

/// A request and the step before which it joins.
struct Job {
    prompt: Vec<u32>,
    max_new_tokens: usize,
    joins_before_step: usize,
    sampling: SamplingParams,
    constrained: bool,
    /// Asks for its tokens' log-probabilities (and one alternative).
    logprobs: bool,
}

impl Job {
    fn greedy(prompt: Vec<u32>, max_new_tokens: usize, joins_before_step: usize) -> Job {
        Job {
            prompt,
            max_new_tokens,
            joins_before_step,
            sampling: SamplingParams::default(),
            constrained: false,
            logprobs: false,
        }
    }
}

/// Allows every token: a constraint that changes nothing, so its row must decode as a free one.
struct AllowAll;

impl TokenConstraint for AllowAll {
    fn allowed(&mut self, vocab_size: usize) -> Result<mlx_rs::Array, String> {
        Ok(mlx_rs::Array::from_slice(
            &vec![true; vocab_size],
            &[vocab_size as i32],
        ))
    }

    fn advance(&mut self, _token: u32) -> Result<(), String> {
        Ok(())
    }
}

/// What a batched run produced: each job's tokens (in job order), the scheduler's speculation
/// counts, how many requests were preempted and how many prompt tokens the prefix cache held.
struct Batched {
    tokens: Vec<Vec<u32>>,
    /// How many of each job's `Token` events carried log-probabilities.
    with_logprobs: Vec<usize>,
    drafted: usize,
    accepted: usize,
    preemptions: usize,
    prefix_hit_tokens: usize,
}

/// Runs `jobs` through a paged scheduler of `num_blocks` blocks with `drafting` (none: no
/// speculation), `k` draft tokens per row. After every step, no running request's table has
/// blocks past its sequence, and (without prefix caching, where no block is shared) together
/// they are every block in use.
fn run_batched(
    target: &Model,
    drafting: Option<BatchDrafting>,
    k: usize,
    jobs: &[Job],
    num_blocks: usize,
) -> Batched {
    run_paged(target, drafting, k, jobs, num_blocks, false)
}

fn run_paged(
    target: &Model,
    drafting: Option<BatchDrafting>,
    k: usize,
    jobs: &[Job],
    num_blocks: usize,
    prefix_caching: bool,
) -> Batched {
    let config = PagedConfig {
        scheduler: SchedulerConfig {
            max_running: 8,
            token_budget: 64,
            prefill_chunk: 32,
        },
        num_blocks,
        prefix_caching,
    };
    let mut scheduler = ok(PagedScheduler::new(target, config), "PagedScheduler::new");
    if let Some(drafting) = drafting {
        let speculator = ok(
            BatchSpeculator::new(drafting, k, target.config().vocab_size),
            "BatchSpeculator::new",
        );
        scheduler = scheduler.with_speculator(Box::new(speculator));
    }
    let mut tokens = vec![Vec::new(); jobs.len()];
    let mut with_logprobs = vec![0; jobs.len()];
    let mut step = 0;
    loop {
        for (id, job) in jobs.iter().enumerate() {
            if job.joins_before_step == step {
                let request = Request {
                    id: id as u64,
                    prompt: job.prompt.clone(),
                    max_new_tokens: job.max_new_tokens,
                    sampling: job.sampling,
                    stop_token_ids: target.config().eos_token_ids.clone(),
                    constraint: job.constrained.then(|| SharedConstraint::new(AllowAll)),
                    logprobs: job.logprobs.then_some(1),
                };
                ok(Batcher::add(&mut scheduler, request), "add");
            }
        }
        let all_joined = jobs.iter().all(|job| job.joins_before_step <= step);
        if all_joined && Batcher::is_idle(&scheduler) {
            break;
        }
        for event in ok(Batcher::step(&mut scheduler), "step") {
            if let Event::Token {
                id,
                token,
                logprobs,
            } = event
            {
                tokens[id as usize].push(token);
                with_logprobs[id as usize] += usize::from(logprobs.is_some());
            }
        }
        let mut held = 0;
        for (id, job) in jobs.iter().enumerate() {
            if let Some(table) = scheduler.block_table(id as u64) {
                // The prompt and the tokens chosen: the most a table holds after a step (the
                // newest token is not in it yet), once the rejected drafts are gone.
                let sequence = job.prompt.len() + tokens[id].len();
                assert!(
                    table.blocks().len() <= sequence.div_ceil(BLOCK_SIZE as usize),
                    "step {step}: request {id} has a sequence of {sequence} tokens but {} blocks (holding {}): the blocks past its kept tokens must go back to the pool",
                    table.blocks().len(),
                    table.len()
                );
                held += table.blocks().len();
            }
        }
        if !prefix_caching {
            assert_eq!(
                scheduler.cache().pool().num_used(),
                held,
                "step {step}: blocks in use beyond the running requests' tables"
            );
        }
        step += 1;
        assert!(step < 10_000, "the scheduler never finished");
    }
    let counts = Batcher::speculation(&scheduler).unwrap_or_default();
    let pool = Batcher::kv_pool(&scheduler).unwrap_or_default();
    Batched {
        tokens,
        with_logprobs,
        drafted: counts.drafted,
        accepted: counts.accepted,
        preemptions: pool.preemptions,
        prefix_hit_tokens: pool.prefix_hit_tokens,
    }
}

/// Prompts of `model_name`'s fixtures: the three sequences, one repeated (prompt lookup finds
/// it), and some that end one token before, at and after a block boundary.
fn prompts(model_name: &str) -> Vec<Vec<u32>> {
    let sequences: Vec<Vec<u32>> = (0..3)
        .map(|index| reference_sequence(model_name, index).0)
        .collect();
    let all: Vec<u32> = sequences
        .iter()
        .flatten()
        .copied()
        .cycle()
        .take(80)
        .collect();
    let block = BLOCK_SIZE as usize;
    let mut prompts = sequences.clone();
    prompts.push(
        sequences[2]
            .iter()
            .cycle()
            .take(3 * block + 5)
            .copied()
            .collect(),
    );
    for length in [block - 1, block, block + 1, 2 * block - 2] {
        prompts.push(all[..length].to_vec());
    }
    prompts
}

/// Runs `f` with the drafting `drafting` describes for `target`.
fn with_drafting<T>(
    target: &Model,
    model_name: &str,
    drafting: Drafting,
    f: impl FnOnce(BatchDrafting) -> T,
) -> T {
    match drafting {
        Drafting::Itself => f(BatchDrafting::Model(target)),
        Drafting::OtherModel => f(BatchDrafting::Model(&tiny_model(other_tiny(model_name)))),
        Drafting::Ngram => f(BatchDrafting::Ngram(NgramDrafter::default())),
    }
}

/// Plain greedy decoding of each job alone, with chapter 8's cache.
fn expected(target: &Model, model_name: &str, jobs: &[Job]) -> Vec<Vec<u32>> {
    let tokenizer = tokenizer_at(&fixture_path(model_name));
    jobs.iter()
        .map(|job| {
            plain_greedy(
                target,
                &tokenizer,
                &job.prompt,
                &options(job.max_new_tokens),
            )
            .tokens
        })
        .collect()
}

/// Rows of different lengths join at different steps and leave after different numbers of
/// tokens; every row, whatever its drafter accepted, gets plain greedy decoding's tokens.
#[rstest]
#[case::llama_itself("llama-tiny", Drafting::Itself, 4)]
#[case::llama_other("llama-tiny", Drafting::OtherModel, 3)]
#[case::llama_ngram("llama-tiny", Drafting::Ngram, 5)]
#[case::qwen2_other("qwen2-tiny", Drafting::OtherModel, 1)]
#[case::qwen3_ngram("qwen3-tiny", Drafting::Ngram, 3)]
#[case::qwen3_itself("qwen3-tiny", Drafting::Itself, 6)]
fn task_5_batched_greedy_matches_plain_greedy_for_every_row(
    #[case] model_name: &str,
    #[case] drafting: Drafting,
    #[case] k: usize,
) {
    let target = tiny_model(model_name);
    let lengths = [16, 5, 24, 1, 12, 2, 20, 9];
    let jobs: Vec<Job> = prompts(model_name)
        .into_iter()
        .zip(lengths)
        .enumerate()
        .map(|(index, (prompt, max_new_tokens))| Job::greedy(prompt, max_new_tokens, index * 3))
        .collect();
    let expected = expected(&target, model_name, &jobs);
    let batched = with_drafting(&target, model_name, drafting, |drafting| {
        run_batched(&target, Some(drafting), k, &jobs, 64)
    });
    for (id, (got, expected)) in batched.tokens.iter().zip(&expected).enumerate() {
        assert_eq!(
            got, expected,
            "{model_name}, {drafting:?} drafting k={k}: request {id} (prompt of {} tokens) differs from plain greedy decoding",
            jobs[id].prompt.len()
        );
    }
    assert!(
        batched.drafted > 0,
        "{model_name}, {drafting:?}: no token was drafted"
    );
    if let Drafting::Itself = drafting {
        assert_eq!(
            batched.accepted, batched.drafted,
            "a greedy model drafting for itself is always right"
        );
    }
}

/// Prompts that end just before, at and after a block boundary, drafted by a model that is
/// mostly wrong: drafts are written into a new block and rewound out of it, step after step.
/// Every step checks that the blocks past a row's kept tokens went back to the pool.
#[rstest]
fn task_5_batched_rewinds_at_block_boundaries(
    #[values("llama-tiny", "qwen2-tiny")] model_name: &str,
    #[values(Drafting::OtherModel, Drafting::Itself)] drafting: Drafting,
) {
    let target = tiny_model(model_name);
    let block = BLOCK_SIZE as usize;
    let all: Vec<u32> = (0..3)
        .flat_map(|index| reference_sequence(model_name, index).0)
        .cycle()
        .take(3 * block)
        .collect();
    let jobs: Vec<Job> = [block - 2, block - 1, block, 2 * block - 1, 2 * block]
        .into_iter()
        .map(|length| Job::greedy(all[..length].to_vec(), 2 * block, 0))
        .collect();
    let expected = expected(&target, model_name, &jobs);
    let batched = with_drafting(&target, model_name, drafting, |drafting| {
        run_batched(&target, Some(drafting), 4, &jobs, 64)
    });
    assert_eq!(
        batched.tokens, expected,
        "{model_name}, {drafting:?} drafting across block boundaries"
    );
}

/// A pool too small for every row's draft: drafts shrink to what fits, requests are preempted
/// and resumed, and the tokens are still plain greedy decoding's.
#[rstest]
fn task_5_batched_pool_exhaustion_shrinks_drafts_and_preempts(
    #[values(Drafting::Itself, Drafting::Ngram)] drafting: Drafting,
) {
    let model_name = "llama-tiny";
    let target = tiny_model(model_name);
    let jobs: Vec<Job> = prompts(model_name)
        .into_iter()
        .take(4)
        .map(|prompt| Job::greedy(prompt, 24, 0))
        .collect();
    let expected = expected(&target, model_name, &jobs);
    let batched = with_drafting(&target, model_name, drafting, |drafting| {
        run_batched(&target, Some(drafting), 6, &jobs, 8)
    });
    assert_eq!(
        batched.tokens, expected,
        "{drafting:?} drafting in a pool of 8 blocks"
    );
    assert!(
        batched.preemptions > 0,
        "the pool of 8 blocks was meant to preempt requests ({} preemptions)",
        batched.preemptions
    );
}

/// Prompts that share their first blocks, joining one after another: the later ones read the
/// earlier ones' blocks from the prefix cache, and speculation writes and rewinds only past
/// them. Every row still gets plain greedy decoding's tokens.
#[rstest]
fn task_5_batched_with_shared_prefix_blocks(
    #[values(Drafting::OtherModel, Drafting::Ngram)] drafting: Drafting,
) {
    let model_name = "qwen2-tiny";
    let target = tiny_model(model_name);
    let block = BLOCK_SIZE as usize;
    let all: Vec<u32> = (0..3)
        .flat_map(|index| reference_sequence(model_name, index).0)
        .cycle()
        .take(4 * block)
        .collect();
    let shared = &all[..2 * block];
    let jobs: Vec<Job> = [3, 9, 17]
        .into_iter()
        .enumerate()
        .map(|(index, tail)| {
            let mut prompt = shared.to_vec();
            prompt.extend_from_slice(&all[2 * block..2 * block + tail]);
            Job::greedy(prompt, 20, index * 2)
        })
        .collect();
    let expected = expected(&target, model_name, &jobs);
    let batched = with_drafting(&target, model_name, drafting, |drafting| {
        run_paged(&target, Some(drafting), 4, &jobs, 64, true)
    });
    assert_eq!(
        batched.tokens, expected,
        "{drafting:?} drafting over shared prefix blocks"
    );
    assert!(
        batched.prefix_hit_tokens > 0,
        "the later prompts were meant to find the shared blocks"
    );
}

/// A constrained row decodes one token per step (its grammar would have to follow every
/// guess), beside a free row that speculates (the target drafting for itself always drafts).
#[test]
fn task_5_batched_constrained_rows_are_not_drafted() {
    let model_name = "llama-tiny";
    let target = tiny_model(model_name);
    let repeated = prompts(model_name)[3].clone();
    let constrained = Job {
        constrained: true,
        ..Job::greedy(repeated.clone(), 20, 0)
    };
    let alone = run_batched(
        &target,
        Some(BatchDrafting::Model(&target)),
        4,
        std::slice::from_ref(&constrained),
        64,
    );
    assert_eq!(alone.drafted, 0, "a constrained row was drafted for");
    let jobs = [constrained, Job::greedy(repeated, 20, 0)];
    let expected = expected(&target, model_name, &jobs);
    let batched = run_batched(&target, Some(BatchDrafting::Model(&target)), 4, &jobs, 64);
    assert_eq!(
        batched.tokens, expected,
        "constrained and free rows batched"
    );
    assert!(
        batched.drafted > 0,
        "the free row was not drafted for: {:?}",
        batched.tokens
    );
}

/// A row asking for log-probabilities decodes one token per step (they are read from each
/// step's first position) and gets them with every token, beside a row that speculates.
#[test]
fn task_5_batched_rows_asking_for_logprobs_are_not_drafted() {
    let model_name = "qwen3-tiny";
    let target = tiny_model(model_name);
    let prompt = prompts(model_name)[0].clone();
    let asking = Job {
        logprobs: true,
        ..Job::greedy(prompt.clone(), 12, 0)
    };
    let alone = run_batched(
        &target,
        Some(BatchDrafting::Model(&target)),
        4,
        std::slice::from_ref(&asking),
        64,
    );
    assert_eq!(
        alone.drafted, 0,
        "a row asking for logprobs was drafted for"
    );
    let jobs = [asking, Job::greedy(prompt, 12, 0)];
    let expected = expected(&target, model_name, &jobs);
    let batched = run_batched(&target, Some(BatchDrafting::Model(&target)), 4, &jobs, 64);
    assert_eq!(
        batched.tokens, expected,
        "rows with and without logprobs batched"
    );
    assert_eq!(
        batched.with_logprobs,
        [batched.tokens[0].len(), 0],
        "log-probabilities with every token of the row that asked, none for the other"
    );
    assert!(batched.drafted > 0, "the other row was not drafted for");
}

/// Sampling rows go through the rejection rule: with the target drafting for itself (the same
/// distribution), nearly every draft token is kept, and each row gets all its tokens.
#[test]
fn task_5_batched_sampling_with_the_target_as_drafter_keeps_nearly_every_draft() {
    let model_name = "qwen3-tiny";
    let target = tiny_model(model_name);
    let jobs: Vec<Job> = prompts(model_name)
        .into_iter()
        .take(3)
        .enumerate()
        .map(|(index, prompt)| Job {
            sampling: SamplingParams {
                temperature: 0.8,
                seed: index as u64,
                ..SamplingParams::default()
            },
            ..Job::greedy(prompt, 24, 0)
        })
        .collect();
    let batched = run_batched(&target, Some(BatchDrafting::Model(&target)), 4, &jobs, 64);
    let rate = batched.accepted as f64 / batched.drafted.max(1) as f64;
    assert!(
        batched.drafted > 0 && rate > 0.95,
        "acceptance {}/{} for a drafter equal to the target",
        batched.accepted,
        batched.drafted
    );
    let vocab = TINY_VOCAB as u32;
    for (id, tokens) in batched.tokens.iter().enumerate() {
        assert!(
            tokens.iter().all(|&token| token < vocab),
            "request {id}: a token outside the vocabulary"
        );
    }
}

/// SmolLM2 (float), batched, drafted by its 4-bit conversion and by prompt lookup: each request
/// gets plain greedy decoding's tokens.
#[test]
fn task_5_batched_smollm2_matches_plain_greedy() {
    let (Some(dir), Some(quantized_dir)) = (
        fetched_model_dir("smollm2-135m-instruct"),
        fetched_model_dir("smollm2-135m-instruct-4bit"),
    ) else {
        return;
    };
    let target = load_model(&dir);
    let tokenizer = tokenizer_at(&dir);
    let drafter = ok(
        load_quantized(&quantized_dir, Quantization::None, 32, Kernel::Mlx),
        "load the 4-bit model",
    );
    let reference = test_support::load_fixture("smollm2/reference.safetensors");
    let jobs: Vec<Job> = [1, 2]
        .into_iter()
        .enumerate()
        .map(|(index, prompt)| {
            let tokens = test_support::token_ids(&reference[&format!("prompt{prompt}.tokens")]);
            Job::greedy(tokens, 16 + 8 * index, index)
        })
        .collect();
    let batched: Vec<(&str, Vec<Vec<u32>>)> = [
        ("4-bit SmolLM2", BatchDrafting::Model(&drafter)),
        (
            "prompt lookup",
            BatchDrafting::Ngram(NgramDrafter::default()),
        ),
    ]
    .into_iter()
    .map(|(name, drafting)| {
        (
            name,
            run_batched(&target, Some(drafting), 3, &jobs, 64).tokens,
        )
    })
    .collect();
    let expected: Vec<Vec<u32>> = jobs
        .iter()
        .map(|job| {
            plain_greedy(
                &target,
                &tokenizer,
                &job.prompt,
                &options(job.max_new_tokens),
            )
            .tokens
        })
        .collect();
    for (name, tokens) in batched {
        assert_eq!(tokens, expected, "SmolLM2 batched, drafted by {name}");
    }
}

/// The first two tokens of 1500 sampled requests (temperature 1, top-4), batched 8 at a time,
/// the second verified against another tiny model's sampled draft of one token: their pairs
/// follow the target's own joint distribution `p(t0) p(t1 | t0)`, computed from chapter 8's
/// forward of each prefix. The chi-square bound is the 0.9999 quantile (Wilson-Hilferty).
#[test]
fn task_5_batched_sampling_keeps_the_target_distribution() {
    let model_name = "qwen3-tiny";
    let target = tiny_model(model_name);
    let drafter = tiny_model(other_tiny(model_name));
    let prompt = reference_sequence(model_name, 2).0;
    let sampling = SamplingParams {
        temperature: 1.0,
        top_k: Some(4),
        ..SamplingParams::default()
    };
    let distribution = |sequence: &[u32]| -> Vec<f32> {
        let ids = mlx_rs::Array::from_slice(sequence, &[1, sequence.len() as i32]);
        let logits = ok(target.forward(&ids, &mut target.new_cache()), "forward");
        let last = logits.index((0, -1)); // [V]
        let p = ok(probabilities(&last, sequence, &sampling), "probabilities");
        p.as_slice::<f32>().to_vec()
    };
    // The joint distribution of (t0, t1) over the target's top-4 after each prefix.
    let mut expected: Vec<((u32, u32), f64)> = Vec::new();
    for (t0, &p0) in distribution(&prompt).iter().enumerate() {
        if p0 > 0.0 {
            let mut prefix = prompt.clone();
            prefix.push(t0 as u32);
            for (t1, &p1) in distribution(&prefix).iter().enumerate() {
                if p1 > 0.0 {
                    expected.push(((t0 as u32, t1 as u32), f64::from(p0) * f64::from(p1)));
                }
            }
        }
    }
    let requests = 1500;
    let jobs: Vec<Job> = (0..requests)
        .map(|seed| Job {
            sampling: SamplingParams { seed, ..sampling },
            ..Job::greedy(prompt.clone(), 3, 0)
        })
        .collect();
    let batched = run_paged(
        &target,
        Some(BatchDrafting::Model(&drafter)),
        1,
        &jobs,
        4096,
        false,
    );
    assert!(batched.drafted > 0, "nothing was drafted");
    let mut counts: HashMap<(u32, u32), usize> = HashMap::new();
    for tokens in batched.tokens.iter().filter(|tokens| tokens.len() >= 2) {
        *counts.entry((tokens[0], tokens[1])).or_default() += 1;
    }
    let total: usize = counts.values().sum();
    let unexpected: usize = counts
        .iter()
        .filter(|(pair, _)| !expected.iter().any(|(known, _)| known == *pair))
        .map(|(_, &count)| count)
        .sum();
    assert_eq!(
        unexpected, 0,
        "pairs outside the target's top-4: {counts:?}"
    );
    // Cells expected fewer than 5 times are pooled, as chi-square needs.
    let (mut statistic, mut cells, mut pooled) = (0.0, 0, (0.0, 0.0));
    for (pair, probability) in &expected {
        let (want, got) = (
            probability * total as f64,
            *counts.get(pair).unwrap_or(&0) as f64,
        );
        if want < 5.0 {
            pooled = (pooled.0 + want, pooled.1 + got);
        } else {
            statistic += (got - want).powi(2) / want;
            cells += 1;
        }
    }
    if pooled.0 > 0.0 {
        statistic += (pooled.1 - pooled.0).powi(2) / pooled.0;
        cells += 1;
    }
    let freedom = (cells - 1) as f64;
    let z = 3.719; // the standard normal's 0.9999 quantile
    let bound =
        freedom * (1.0 - 2.0 / (9.0 * freedom) + z * (2.0 / (9.0 * freedom)).sqrt()).powi(3);
    assert!(
        statistic < bound,
        "the batched tokens do not follow the target's distribution: chi-square {statistic:.1} >= {bound:.1} over {cells} cells ({total} requests, {} of {} drafts accepted)",
        batched.accepted,
        batched.drafted
    );
}
