//! Pipeline: wires the stages together — ingest, embed, index, mine, write, report — and times each one.
//!
//! Each stage gets validated config and the previous stage's output; CPU-heavy stages run on their
//! own threads (ONNX Runtime's pool, rayon for search and mining), one at a time, so the cores are
//! never oversubscribed.

use crate::config::{Config, IndexKind, LexicalStrategy, LlmStrategy};
use crate::embed::{EmbedError, EmbedStats, Embedder};
use crate::filter;
use crate::generate::llm::{DryRun, LlmGenerator, LlmStageError};
use crate::generate::{self, Candidate, GenerateError, StrategyCounts};
use crate::hash::ContentHash;
use crate::index::bm25::Bm25;
use crate::index::{Index, IndexError, Persist};
use crate::ingest::{self, Dataset, IngestError, Query, QueryOrigin};
use crate::judge::{JudgeError, JudgeStage};

use crate::mine::{self, MineError};
use crate::models::{self, ModelError};
use crate::output::html;
use crate::output::manifest::Manifest;
use crate::output::report::{InputChanges, Memory, RunReport, Scores, Timings};
use crate::output::schema;
use crate::output::write::{self, JudgeOutput, WriteError};
use crate::vectors::Vectors;
use crate::workspace::queue::Queue;
use crate::workspace::{Produced, Store, StoreError};
use std::time::Instant;

/// Errors of a pipeline run: one variant per stage.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Reading inputs.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// Generating variants.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// LLM generation.
    #[error(transparent)]
    Llm(#[from] LlmStageError),
    /// Finding the model or runtime.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Embedding.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The workspace store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Mining.
    #[error(transparent)]
    Mine(#[from] MineError),
    /// Writing outputs.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The HTML report.
    #[error(transparent)]
    HtmlReport(#[from] html::HtmlReportError),
    /// The temporary workspace of `eval` without `--workspace`.
    #[error("cannot create a temporary workspace: {0}")]
    TempDir(std::io::Error),
    /// The judge.
    #[error(transparent)]
    Judge(#[from] JudgeError),
    /// The contamination guard.
    #[error(transparent)]
    Contamination(#[from] crate::contamination::ContaminationError),
}

/// True when synthetic generation may supply all queries.
fn corpus_only(cfg: &Config) -> bool {
    cfg.llm.is_some() && cfg.generate.llm.strategies.contains(&LlmStrategy::Synthetic)
}

/// Plan the LLM calls of a run without sending any (reads the inputs and the workspace only).
pub fn dry_run(cfg: &Config) -> Result<Option<DryRun>, PipelineError> {
    let Some(llm) = cfg.llm.as_ref().filter(|_| !cfg.generate.llm.strategies.is_empty()) else {
        return Ok(None);
    };
    let ds = ingest::load(&cfg.input, corpus_only(cfg))?;
    let store = Store::connect(&cfg.workspace_location())?;
    let g = LlmGenerator::new(&cfg.generate.llm, llm)?;
    Ok(Some(g.dry_run(&ds, &store)?))
}

/// How to run, as opposed to what to run (the [`Config`]): not part of the manifest.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Draw progress bars on stderr.
    pub progress: bool,
}

/// Run the whole pipeline with a validated config (no progress bars).
pub fn run(cfg: &Config) -> Result<RunReport, PipelineError> {
    run_with(cfg, RunOptions::default())
}

/// Run the whole pipeline with a validated config.
pub fn run_with(cfg: &Config, opts: RunOptions) -> Result<RunReport, PipelineError> {
    match run_inner(cfg, opts, false)? {
        Ran::Report(r) => Ok(*r),
        Ran::Plan(_) => unreachable!("a full run does not stop at the plan"),
    }
}

/// What the judge's paid stages would send on their first pass, without sending anything: runs
/// ingest, embedding, the index and the mining rules (local work, cached like a run's), skips LLM
/// generation (its queries cannot be known without sending), and writes nothing.
pub fn judge_plan(cfg: &Config, opts: RunOptions) -> Result<crate::judge::JudgeStats, PipelineError> {
    match run_inner(cfg, opts, true)? {
        Ran::Plan(p) => Ok(*p),
        Ran::Report(_) => unreachable!("a plan stops before writing"),
    }
}

enum Ran {
    Report(Box<RunReport>),
    Plan(Box<crate::judge::JudgeStats>),
}

fn run_inner(cfg: &Config, opts: RunOptions, plan_judge: bool) -> Result<Ran, PipelineError> {
    let t0 = Instant::now();
    let mut timings = Timings::default();
    let mut memory = Memory::default();
    let show = opts.progress;

    let t = Instant::now();
    let mut ds = ingest::load(&cfg.input, corpus_only(cfg))?;
    timings.ingest = t.elapsed().as_secs_f64();
    memory.mark("ingest");
    crate::killpoint::hit("ingest");
    log::info!(
        "read {} documents, {} queries with positives, {} pairs ({} bad records skipped)",
        ds.docs.len(),
        ds.queries.len(),
        ds.report.pairs,
        ds.report.skipped
    );

    // The workspace first: a database that cannot be reached fails the run before the model loads.
    let mut store = Store::connect(&cfg.workspace_location())?;
    let local = store.local_dir(&cfg.output.dir);
    if let crate::workspace::Location::Postgres(url) = cfg.workspace_location()
        && cfg.queue.enabled
        && !plan_judge
    {
        let mut queue = Queue::connect(&url, crate::workspace::queue::coordinator_name(), &cfg.queue)?;
        let run = queue.coordinate()?;
        log::info!("coordinating run {run} of {url}: workers (`tripletgen worker`) may join");
        store.attach_queue(queue);
    }

    let t = Instant::now();
    let resolved = models::resolve(&cfg.model)?;
    let mut embedder = Embedder::load(&resolved, cfg)?;
    timings.load_model = t.elapsed().as_secs_f64();
    memory.mark("load_model");

    let doc_items: Vec<(String, ContentHash)> = ds.docs.iter().map(|d| (d.id.clone(), d.hash)).collect();
    let query_items: Vec<(String, ContentHash)> = ds.queries.iter().map(|q| (q.id.clone(), q.hash)).collect();
    let changes = InputChanges {
        documents: store.compare_snapshot("document", &doc_items)?,
        queries: store.compare_snapshot("query", &query_items)?,
    };
    if !changes.documents.first_run {
        log::info!("since the last run: documents {}; queries {}", changes.documents, changes.queries);
    }

    let t = Instant::now();
    let doc_texts: Vec<&str> = ds.docs.iter().map(|d| d.text.as_str()).collect();
    let (doc_vecs, embed_documents) =
        embedder.embed_cached(&mut store, &doc_texts, &cfg.embed.document_prefix, "docs", show)?;
    timings.embed = t.elapsed().as_secs_f64();
    memory.mark("embed_documents");

    let t = Instant::now();
    let doc_keys: Vec<ContentHash> = ds.docs.iter().map(|d| d.hash).collect();
    let graph_file = local.join(crate::workspace::GRAPH_FILE);
    if cfg.index.persist {
        store.fetch_file(crate::workspace::GRAPH_FILE, &graph_file)?;
    }
    let persist = cfg.index.persist.then(|| Persist {
        path: graph_file.clone(),
        fingerprint: format!(
            "model={} prefix={:?} m={} ef_construction={}",
            embedder.model_id, cfg.embed.document_prefix, cfg.index.m, cfg.index.ef_construction
        ),
        keys: &doc_keys,
    });
    // Building a graph is the memory peak of a run: give ONNX Runtime's buffers back first when
    // this run used them, and load the model again afterwards.
    let mut kept = Some(embedder);
    if cfg.index.uses_hnsw(ds.docs.len()) && embed_documents.embedded > 0 {
        kept = None;
        crate::index::release_free_memory();
    }
    let (index, mut index_stats) = Index::build(doc_vecs, &cfg.index, persist, show)?;
    if cfg.index.persist {
        store.save_file(crate::workspace::GRAPH_FILE, &graph_file)?;
    }
    let mut bm25 = if cfg.mine.uses_bm25() {
        let docs: Vec<(&str, ContentHash)> = ds.docs.iter().map(|d| (d.text.as_str(), d.hash)).collect();
        let b = Bm25::refresh(&local.join("index").join("bm25"), &docs).map_err(IndexError::from)?;
        log::info!(
            "bm25: {} texts ({} added, {} deleted) in {:.2}s",
            b.stats.documents,
            b.stats.added,
            b.stats.deleted,
            b.stats.build_seconds
        );
        Some(b)
    } else {
        None
    };
    timings.index = t.elapsed().as_secs_f64();
    memory.mark("index");
    let mut embedder = match kept {
        Some(e) => e,
        None => {
            let t = Instant::now();
            let e = Embedder::load(&resolved, cfg)?;
            timings.load_model += t.elapsed().as_secs_f64();
            e
        }
    };
    crate::killpoint::hit("index");
    if cfg.index.kind == IndexKind::Auto {
        log::info!("index: {} ({} documents; exact below {})", index.kind(), ds.docs.len(), cfg.index.exact_below);
    }

    let mut llm_gen = match (&cfg.llm, cfg.generate.llm.strategies.is_empty()) {
        (Some(l), false) if !plan_judge => Some(LlmGenerator::new(&cfg.generate.llm, l)?),
        _ => None,
    };
    let mut rounds = Rounds { show, ..Rounds::default() };
    let no_queries = Vectors { dim: index.dim(), data: Vec::new() };

    // Round 1: synthetic queries from documents; accepted ones join the queries.
    if let Some(g) = llm_gen.as_mut() {
        let t = Instant::now();
        let cands = g.synthetic(&ds, &mut store)?;
        timings.generate += t.elapsed().as_secs_f64();
        rounds.judge(cfg, &mut ds, &mut embedder, &mut store, &index, &no_queries, None, cands, &mut timings)?;
    }

    let t = Instant::now();
    let query_texts: Vec<&str> = ds.queries.iter().map(|q| q.text.as_str()).collect();
    let (mut query_vecs, embed_queries) =
        embedder.embed_cached(&mut store, &query_texts, &cfg.embed.query_prefix, "queries", show)?;
    timings.embed += t.elapsed().as_secs_f64();
    memory.mark("embed_queries");
    if index.kind() == crate::index::SearchKind::Hnsw && cfg.index.recall_sample > 0 {
        index_stats.recall =
            index.measure_recall(&query_vecs, cfg.mine.range_max, cfg.index.recall_sample, cfg.mine.seed);
    }

    // Round 2: variants of every query (given and synthetic): lexical, paraphrase, backtranslation.
    let t = Instant::now();
    let lexical = generate_lexical(cfg, &ds, &mut embedder, &mut store, show)?;
    let mut cands = lexical.candidates;
    if let Some(g) = llm_gen.as_mut() {
        cands.extend(g.query_variants(&ds, &mut store)?);
    }
    timings.generate += t.elapsed().as_secs_f64();
    let vecs = query_vecs.clone();
    rounds.judge(cfg, &mut ds, &mut embedder, &mut store, &index, &vecs, Some(&mut query_vecs), cands, &mut timings)?;
    let exclude_eval = exclude_eval(cfg, &mut ds, &query_vecs, &mut embedder, &mut store, show)?;
    memory.mark("generate");
    let model_checksums = std::mem::take(&mut embedder.checksums);
    drop(embedder);

    let t = Instant::now();
    let mut judge = JudgeStage::new(cfg, &ds)?;
    if plan_judge {
        judge.plan_only();
    }
    let (pairs, mine_stats) =
        mine::mine(&ds, &index, &query_vecs, &cfg.mine, bm25.as_mut(), Some((&mut judge, &mut store)), show)?;
    timings.mine = t.elapsed().as_secs_f64();
    memory.mark("mine");
    crate::killpoint::hit("mine");
    if plan_judge {
        return Ok(Ran::Plan(Box::new(judge.stats)));
    }
    let judged = judge.is_active().then(|| JudgeOutput::of(&mut judge, cfg, &ds, &pairs, &mut store)).transpose()?;

    let t = Instant::now();
    let out = &cfg.output.dir;
    let mut write_stats =
        write::write_all(out, &cfg.output.formats, &cfg.mine, cfg.output.row_group_size, &ds, &pairs, judged.as_ref())?;
    if let Some(j) = judged.as_ref().filter(|j| !j.relabelled.is_empty()) {
        write_stats.files.push(write::write_judged_qrels(out, &ds, &j.relabelled)?);
    }
    if !rounds.candidates.is_empty() {
        let f = write::write_variants(out, &ds, &rounds.candidates, &rounds.decisions)?;
        write_stats.files.push(f);
    }
    if cfg.mine.review {
        write_stats.files.push(write::write_review(out, &ds, &pairs)?);
    }
    timings.write = t.elapsed().as_secs_f64();
    memory.mark("write");
    timings.total = t0.elapsed().as_secs_f64();
    crate::killpoint::hit("report");

    let report = RunReport {
        version: env!("CARGO_PKG_VERSION").into(),
        output_dir: out.clone(),
        ingest: ds.report.clone(),
        changes,
        embed_documents,
        embed_queries,
        embed_variants: rounds.embed.clone(),
        generate: generation_counts(&lexical.counts, &rounds.candidates),
        filter: filter::summarize(&rounds.candidates, &rounds.decisions),
        llm: llm_gen.map(|g| g.stats),
        index: index_stats,
        mine: mine_stats,
        judge: judge.is_active().then(|| judge.stats.clone()),
        exclude_eval,
        scores: Scores::of(&pairs),
        write: write_stats,
        timings,
        memory,
    };
    let (docs_produced, queries_produced) = produced(&ds, &rounds, &pairs);
    store.save_snapshot("document", &docs_produced)?;
    store.save_snapshot("query", &queries_produced)?;
    store.finish_queue()?;
    let report_json = serde_json::to_vec_pretty(&report).expect("report serialises");
    write::write_atomic(&out.join(schema::REPORT_JSON), &report_json)?;
    let page = html::Inputs {
        report: &report,
        cfg,
        ds: &ds,
        pairs: &pairs,
        candidates: &rounds.candidates,
        decisions: &rounds.decisions,
    };
    html::write(out, &page)?;
    let manifest = Manifest::new(cfg, &resolved, &model_checksums, &report)?;
    write::write_atomic(
        &out.join(schema::MANIFEST_JSON),
        &serde_json::to_vec_pretty(&manifest).expect("manifest serialises"),
    )?;
    Ok(Ran::Report(Box::new(report)))
}

/// The contamination guard, when evaluation sets are configured: reads them, embeds their queries
/// (cached like any text) and removes what matches from `ds`.
fn exclude_eval(
    cfg: &Config,
    ds: &mut Dataset,
    query_vecs: &Vectors,
    embedder: &mut Embedder,
    store: &mut Store,
    show: bool,
) -> Result<Option<crate::contamination::ContaminationStats>, PipelineError> {
    use crate::contamination;
    if cfg.exclude_eval.dirs.is_empty() {
        return Ok(None);
    }
    let sets = contamination::load(&cfg.exclude_eval, &cfg.input)?;
    let texts = contamination::query_texts(&sets);
    let (eval_vecs, _) = embedder.embed_cached(store, &texts, &cfg.embed.query_prefix, "eval queries", show)?;
    Ok(Some(contamination::apply(ds, query_vecs, &sets, &eval_vecs, &cfg.exclude_eval)))
}

/// What this run produced from each document and each given query (for the workspace snapshot).
fn produced(ds: &Dataset, rounds: &Rounds, pairs: &[mine::MinedPair]) -> (Vec<Produced>, Vec<Produced>) {
    let row = |id: &str, hash| Produced { id: id.to_string(), hash, generated: 0, negatives: 0 };
    let mut docs: Vec<Produced> = ds.docs.iter().map(|d| row(&d.id, d.hash)).collect();
    let given = ds.queries.iter().take_while(|q| q.origin.is_none()).count();
    let mut queries: Vec<Produced> = ds.queries[..given].iter().map(|q| row(&q.id, q.hash)).collect();
    for c in rounds.candidates.iter().zip(&rounds.decisions).filter(|(_, d)| d.accepted).map(|(c, _)| c) {
        match c.source {
            generate::Source::Document(i) => docs[i].generated += 1,
            generate::Source::Query(i) if i < given => queries[i].generated += 1,
            generate::Source::Query(_) => {}
        }
    }
    for p in pairs {
        for n in &p.negatives {
            docs[n.doc].negatives += 1;
        }
        if p.query < given {
            queries[p.query].negatives += p.negatives.len();
        }
    }
    (docs, queries)
}

/// Everything generated in this run, with verdicts, in generation order.
#[derive(Default)]
struct Rounds {
    /// Draw progress bars.
    show: bool,
    candidates: Vec<Candidate>,
    decisions: Vec<filter::Decision>,
    embed: EmbedStats,
}

impl Rounds {
    /// Embed, filter and accept one round of candidates: accepted ones become queries (with their
    /// vectors appended to `query_vecs` when given).
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &mut self,
        cfg: &Config,
        ds: &mut Dataset,
        embedder: &mut Embedder,
        store: &mut Store,
        index: &Index,
        source_query_vecs: &Vectors,
        mut query_vecs: Option<&mut Vectors>,
        cands: Vec<Candidate>,
        timings: &mut Timings,
    ) -> Result<(), PipelineError> {
        if cands.is_empty() {
            return Ok(());
        }
        let t = Instant::now();
        let texts: Vec<&str> = cands.iter().map(|c| c.text.as_str()).collect();
        let (cand_vecs, stats) =
            embedder.embed_cached(store, &texts, &cfg.embed.query_prefix, "variants", self.show)?;
        self.embed.add(&stats);
        timings.embed += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let decisions = filter::filter(&cands, ds, source_query_vecs, &cand_vecs, index, &cfg.filter)?;
        for (i, (c, d)) in cands.iter().zip(&decisions).enumerate() {
            if d.accepted {
                let origin = QueryOrigin { source_id: c.source.id(ds).to_string(), strategy: c.strategy };
                let answers = match c.source {
                    generate::Source::Query(i) => ds.queries[i].answers.clone(),
                    generate::Source::Document(_) => c.document_answer(ds).map(str::to_string).into_iter().collect(),
                };
                let q = Query {
                    id: c.id.clone(),
                    text: c.text.clone(),
                    hash: ContentHash::of(&c.text),
                    origin: Some(origin),
                    answers,
                };
                let positives = c.source.positives(ds);
                ds.queries.push(q);
                ds.positives.push(positives);
                if let Some(v) = query_vecs.as_deref_mut() {
                    v.data.extend_from_slice(cand_vecs.row(i));
                }
            }
        }
        timings.filter += t.elapsed().as_secs_f64();
        crate::killpoint::hit("filter");
        self.candidates.extend(cands);
        self.decisions.extend(decisions);
        Ok(())
    }
}

/// Per-strategy generation counts: lexical counts (with their inapplicable attempts) plus the
/// candidates of LLM strategies.
fn generation_counts(
    lexical: &std::collections::BTreeMap<String, StrategyCounts>,
    cands: &[Candidate],
) -> std::collections::BTreeMap<String, StrategyCounts> {
    let mut out = lexical.clone();
    for c in cands.iter().filter(|c| c.llm.is_some()) {
        out.entry(c.strategy.name().to_string()).or_default().produced += 1;
    }
    out
}

/// Lexical candidates and their per-strategy counts.
struct Lexical {
    candidates: Vec<Candidate>,
    counts: std::collections::BTreeMap<String, StrategyCounts>,
}

/// Run the configured lexical strategies (embedding the vocabulary for embedding-neighbour).
fn generate_lexical(
    cfg: &Config,
    ds: &Dataset,
    embedder: &mut Embedder,
    store: &mut Store,
    show: bool,
) -> Result<Lexical, PipelineError> {
    let lx = &cfg.generate.lexical;
    if lx.strategies.is_empty() {
        return Ok(Lexical { candidates: Vec::new(), counts: Default::default() });
    }
    let wordnet = generate::load_wordnet_if_needed(lx, &models::cache_root(&cfg.model))?;
    let stopwords = generate::stopwords(lx)?;
    let neighbours = if lx.strategies.contains(&LexicalStrategy::EmbeddingNeighbour) {
        generate::neighbour_table(ds, lx, &stopwords, |texts, label| {
            Ok::<_, PipelineError>(embedder.embed_cached(store, texts, "", label, show)?.0)
        })?
    } else {
        Default::default()
    };
    let contextual = match &lx.mlm_dir {
        Some(dir) if lx.strategies.contains(&LexicalStrategy::Contextual) => {
            let runtime = models::resolve_runtime(&cfg.model)?;
            let mut mlm = generate::mlm::MaskedLm::load(dir, &runtime, cfg.embed.threads)?;
            generate::contextual_table(ds, lx, &stopwords, &mut mlm, show)?
        }
        _ => Default::default(),
    };
    let lex = generate::lexical::Lexicon { wordnet: wordnet.as_ref(), stopwords, neighbours, contextual };
    let (candidates, counts) = generate::lexical_candidates(ds, lx, &lex);
    log::info!("generated {} lexical candidates", candidates.len());
    Ok(Lexical { candidates, counts })
}
