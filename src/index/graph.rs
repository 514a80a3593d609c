//! The HNSW graph tripletgen searches and updates: u32 links in fixed-size slots (layer 0) or short
//! lists (upper layers) and one contiguous vector array, row `i` belonging to node `i`.
//!
//! hnsw_rs builds the first graph (see `super::HnswIndex`); this module takes it over, searches it
//! (a beam search with prefetched neighbours, skipping nodes that are no longer live), inserts new
//! points with the same algorithm (greedy descent, beam of `ef_construction`, the neighbour
//! selection heuristic, pruning of overfull lists), and saves and loads it for the next run.

use super::Ord32;
use crate::hash::ContentHash;
use crate::vectors::dot;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

/// Slot value of an unused layer-0 link.
const NONE: u32 = u32::MAX;
/// File format tag (bump on any change of the layout below).
const MAGIC: &[u8; 8] = b"TGHNSW01";
/// Levels above this are never drawn (as in hnsw_rs).
const MAX_LEVEL: usize = 15;

/// A searchable, growable HNSW graph.
pub(crate) struct Graph {
    pub dim: usize,
    /// Most links per node on upper layers (`M`).
    m: usize,
    /// Most links per node on layer 0.
    m0: usize,
    vectors: Vec<f32>,
    count0: Vec<u32>,
    layer0: Vec<u32>,
    upper: HashMap<u32, Vec<Vec<u32>>>,
    entry: u32,
    max_level: usize,
}

thread_local! {
    /// Per-thread visited marks (generation-stamped, so no clearing between searches).
    static VISITED: std::cell::RefCell<(Vec<u32>, u32)> = const { std::cell::RefCell::new((Vec::new(), 0)) };
}

/// Hint the CPU to start loading every cache line of `v`.
#[inline(always)]
fn prefetch(v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = v.as_ptr() as *const i8;
        for line in (0..std::mem::size_of_val(v)).step_by(64) {
            // SAFETY: prefetching is a hint; it never faults, whatever the address. SSE is baseline
            // on x86_64.
            #[allow(unused_unsafe)]
            unsafe {
                _mm_prefetch(p.wrapping_add(line), _MM_HINT_T0)
            };
        }
    }
}

/// Links of a graph by point number: for each point, one list per level (0 first).
pub(crate) type RawLinks = Vec<Vec<Vec<u32>>>;

/// What a saved graph carries besides the graph.
pub(crate) struct Saved {
    pub graph: Graph,
    /// Content hash of the document behind each node.
    pub keys: Vec<ContentHash>,
    /// Fingerprint of what the vectors and links depend on (model, prefix, M, ef_construction).
    pub fingerprint: String,
    /// Nodes inserted since hnsw_rs built the graph.
    pub inserted_since_build: u64,
}

impl Graph {
    /// Take over a built graph: renumber the points in breadth-first order from `entry` over layer 0
    /// (neighbours end up next to each other in memory) and gather the vectors in that order with
    /// `vector_of(point, out)`. Returns the graph and the node of every point.
    pub fn from_raw(
        raw: RawLinks,
        entry: usize,
        dim: usize,
        m: usize,
        mut vector_of: impl FnMut(usize, &mut [f32]) -> std::io::Result<()>,
    ) -> std::io::Result<(Graph, Vec<u32>)> {
        let n = raw.len();
        let max_level = raw.get(entry).map_or(0, |l| l.len() - 1);
        let m0 = raw.iter().map(|l| l[0].len()).max().unwrap_or(0).max(2 * m);
        let mut node_of = vec![NONE; n];
        let mut order: Vec<u32> = Vec::with_capacity(n);
        let mut visit = |p: usize, order: &mut Vec<u32>| {
            if node_of[p] == NONE {
                node_of[p] = order.len() as u32;
                order.push(p as u32);
            }
        };
        let mut head = 0;
        for start in std::iter::once(entry).chain(0..n) {
            visit(start, &mut order);
            while head < order.len() {
                let p = order[head] as usize;
                head += 1;
                for &nb in &raw[p][0] {
                    visit(nb as usize, &mut order);
                }
            }
        }
        let mut g = Graph {
            dim,
            m,
            m0,
            vectors: vec![0f32; n * dim],
            count0: Vec::with_capacity(n),
            layer0: Vec::with_capacity(n * m0),
            upper: HashMap::new(),
            entry: node_of.get(entry).copied().unwrap_or(0),
            max_level,
        };
        for (node, &p) in order.iter().enumerate() {
            let layers = &raw[p as usize];
            g.count0.push(layers[0].len() as u32);
            g.layer0.extend(layers[0].iter().map(|&q| node_of[q as usize]));
            g.layer0.extend(std::iter::repeat_n(NONE, m0 - layers[0].len()));
            if layers.len() > 1 {
                let ups = layers[1..].iter().map(|l| l.iter().map(|&q| node_of[q as usize]).collect()).collect();
                g.upper.insert(node as u32, ups);
            }
            vector_of(p as usize, &mut g.vectors[node * dim..(node + 1) * dim])?;
        }
        Ok((g, node_of))
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.count0.len()
    }

    pub fn vector(&self, node: u32) -> &[f32] {
        let i = node as usize * self.dim;
        &self.vectors[i..i + self.dim]
    }

    fn neighbours(&self, node: u32, layer: usize) -> &[u32] {
        if layer == 0 {
            let s = node as usize * self.m0;
            &self.layer0[s..s + self.count0[node as usize] as usize]
        } else {
            self.upper.get(&node).and_then(|v| v.get(layer - 1)).map(Vec::as_slice).unwrap_or_default()
        }
    }

    /// Greedy walk on `layer` from `ep` towards `q`.
    fn greedy(&self, q: &[f32], mut ep: (Ord32, u32), layer: usize) -> (Ord32, u32) {
        loop {
            let mut moved = false;
            for &nb in self.neighbours(ep.1, layer) {
                let d = (Ord32(-dot(q, self.vector(nb))), nb);
                if d < ep {
                    ep = d;
                    moved = true;
                }
            }
            if !moved {
                return ep;
            }
        }
    }

    /// Entry point on layer 0 (or `stop`) for `q`: greedy descent from the top.
    fn descend(&self, q: &[f32], stop: usize) -> (Ord32, u32) {
        let mut ep = (Ord32(-dot(q, self.vector(self.entry))), self.entry);
        for l in (stop + 1..=self.max_level).rev() {
            ep = self.greedy(q, ep, l);
        }
        ep
    }

    /// Beam search of width `ef` on `layer` from `ep`. Distances are negated dot products; ties go to
    /// the lower node. Nodes for which `live` is false are walked through but not returned.
    /// Returns (distance, node), unordered.
    fn beam(&self, q: &[f32], ep: (Ord32, u32), ef: usize, layer: usize, live: Option<&[bool]>) -> Vec<(Ord32, u32)> {
        let n = self.len();
        let is_live = |node: u32| live.is_none_or(|l| l[node as usize]);
        VISITED.with(|cell| {
            let mut guard = cell.borrow_mut();
            let (marks, generation) = &mut *guard;
            if marks.len() < n {
                marks.clear();
                marks.resize(n, 0);
                *generation = 0;
            }
            *generation = generation.wrapping_add(1);
            if *generation == 0 {
                marks.iter_mut().for_each(|m| *m = 0);
                *generation = 1;
            }
            let generation = *generation;
            let mut candidates = BinaryHeap::with_capacity(ef * 4);
            let mut results: BinaryHeap<(Ord32, u32)> = BinaryHeap::with_capacity(ef + 1);
            let mut fresh: Vec<u32> = Vec::with_capacity(self.m0);
            marks[ep.1 as usize] = generation;
            candidates.push(Reverse(ep));
            if is_live(ep.1) {
                results.push(ep);
            }
            while let Some(Reverse(c)) = candidates.pop() {
                if results.len() >= ef && results.peek().is_some_and(|&worst| c > worst) {
                    break;
                }
                // Mark the unvisited neighbours and start loading their vectors before scoring any.
                fresh.clear();
                for &nb in self.neighbours(c.1, layer) {
                    let slot = &mut marks[nb as usize];
                    if *slot != generation {
                        *slot = generation;
                        fresh.push(nb);
                    }
                }
                // Two vectors in flight ahead of the one being scored.
                for &nb in fresh.iter().take(2) {
                    prefetch(self.vector(nb));
                }
                for (i, &nb) in fresh.iter().enumerate() {
                    if let Some(&next) = fresh.get(i + 2) {
                        prefetch(self.vector(next));
                    }
                    let d = (Ord32(-dot(q, self.vector(nb))), nb);
                    if results.len() < ef || results.peek().is_some_and(|&worst| d < worst) {
                        candidates.push(Reverse(d));
                        if is_live(nb) {
                            results.push(d);
                            if results.len() > ef {
                                results.pop();
                            }
                        }
                    }
                }
            }
            results.into_vec()
        })
    }

    /// The `ef` best live nodes for `q` as (node, score), unordered.
    pub fn search(&self, q: &[f32], ef: usize, live: Option<&[bool]>) -> Vec<(u32, f32)> {
        if self.len() == 0 {
            return Vec::new();
        }
        let ep = self.descend(q, 0);
        self.beam(q, ep, ef, 0, live).into_iter().map(|(d, node)| (node, -d.0)).collect()
    }

    /// Insert `v` as a new node (returned): greedy descent to the node's level, then on each layer
    /// a beam of `ef_construction`, links to the candidates the heuristic selects, and links back
    /// from them (pruning overfull lists with the same heuristic). The node's level is drawn from
    /// `seed` and its number, so the same inserts give the same graph.
    pub fn insert(&mut self, v: &[f32], ef_construction: usize, seed: u64) -> u32 {
        let id = self.len() as u32;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (u64::from(id) << 20));
        let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        let level = ((-u.ln() / (self.m as f64).ln()) as usize).min(MAX_LEVEL);
        self.vectors.extend_from_slice(v);
        self.count0.push(0);
        self.layer0.extend(std::iter::repeat_n(NONE, self.m0));
        if level > 0 {
            self.upper.insert(id, vec![Vec::new(); level]);
        }
        if id == 0 {
            self.entry = 0;
            self.max_level = level;
            return id;
        }
        let mut ep = self.descend(v, level);
        for layer in (0..=level.min(self.max_level)).rev() {
            let mut found = self.beam(v, ep, ef_construction, layer, None);
            found.retain(|&(_, n)| n != id);
            found.sort_unstable();
            let chosen = self.select(&found, self.m);
            self.set_links(id, layer, chosen.iter().map(|&(_, n)| n).collect());
            for &(_, nb) in &chosen {
                self.link_back(nb, id, layer);
            }
            if let Some(&best) = found.first() {
                ep = best;
            }
        }
        if level > self.max_level {
            self.entry = id;
            self.max_level = level;
        }
        id
    }

    /// The neighbour selection heuristic: walk `sorted` (closest first) and keep a candidate only
    /// when it is closer to the base than to every candidate kept so far; at most `cap`.
    fn select(&self, sorted: &[(Ord32, u32)], cap: usize) -> Vec<(Ord32, u32)> {
        let mut kept: Vec<(Ord32, u32)> = Vec::with_capacity(cap);
        for &(d, c) in sorted {
            if kept.len() >= cap {
                break;
            }
            let cv = self.vector(c);
            if kept.iter().all(|&(_, k)| Ord32(-dot(cv, self.vector(k))) > d) {
                kept.push((d, c));
            }
        }
        kept
    }

    fn set_links(&mut self, node: u32, layer: usize, links: Vec<u32>) {
        if layer == 0 {
            let s = node as usize * self.m0;
            let n = links.len().min(self.m0);
            self.layer0[s..s + n].copy_from_slice(&links[..n]);
            self.layer0[s + n..s + self.m0].fill(NONE);
            self.count0[node as usize] = n as u32;
        } else if let Some(l) = self.upper.get_mut(&node).and_then(|v| v.get_mut(layer - 1)) {
            *l = links;
        }
    }

    /// Add `new` to `node`'s links on `layer`, pruning with the heuristic when the list is full.
    fn link_back(&mut self, node: u32, new: u32, layer: usize) {
        let cap = if layer == 0 { self.m0 } else { self.m };
        let mut links = self.neighbours(node, layer).to_vec();
        if links.contains(&new) {
            return;
        }
        links.push(new);
        if links.len() > cap {
            let base = self.vector(node);
            let mut scored: Vec<(Ord32, u32)> = links.iter().map(|&l| (Ord32(-dot(base, self.vector(l))), l)).collect();
            scored.sort_unstable();
            links = self.select(&scored, cap).into_iter().map(|(_, l)| l).collect();
        }
        self.set_links(node, layer, links);
    }

    /// Write the graph, the key of each node and the metadata to `path` (through a temporary file
    /// in the same folder, renamed when complete).
    pub fn save(
        &self,
        path: &Path,
        keys: &[ContentHash],
        fingerprint: &str,
        inserted_since_build: u64,
    ) -> std::io::Result<()> {
        let mut tmp = crate::fsx::AtomicFile::create(path, ("index-synced", "index-saved"))?;
        {
            let mut w = BufWriter::with_capacity(1 << 20, tmp.file());
            let u64s = |w: &mut BufWriter<_>, v: u64| w.write_all(&v.to_le_bytes());
            w.write_all(MAGIC)?;
            u64s(&mut w, fingerprint.len() as u64)?;
            w.write_all(fingerprint.as_bytes())?;
            for v in [self.dim, self.m, self.m0, self.len(), self.entry as usize, self.max_level] {
                u64s(&mut w, v as u64)?;
            }
            u64s(&mut w, inserted_since_build)?;
            for k in keys {
                w.write_all(&k.0)?;
            }
            write_u32s(&mut w, &self.count0)?;
            write_u32s(&mut w, &self.layer0)?;
            let mut nodes: Vec<&u32> = self.upper.keys().collect();
            nodes.sort_unstable();
            u64s(&mut w, nodes.len() as u64)?;
            for &node in nodes {
                let layers = &self.upper[&node];
                write_u32s(&mut w, &[node, layers.len() as u32])?;
                for l in layers {
                    write_u32s(&mut w, &[l.len() as u32])?;
                    write_u32s(&mut w, l)?;
                }
            }
            for x in &self.vectors {
                w.write_all(&x.to_le_bytes())?;
            }
            w.flush()?;
        }
        tmp.commit()
    }

    /// Read a graph written by [`Graph::save`]. Any inconsistency is an `InvalidData` error.
    pub fn load(path: &Path) -> std::io::Result<Saved> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {what}", path.display()));
        let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(bad("not a tripletgen HNSW file (or an older format)"));
        }
        let fp_len = read_u64(&mut r)? as usize;
        if fp_len > 4096 {
            return Err(bad("fingerprint too long"));
        }
        let mut fp = vec![0u8; fp_len];
        r.read_exact(&mut fp)?;
        let fingerprint = String::from_utf8(fp).map_err(|_| bad("fingerprint is not UTF-8"))?;
        let mut h = [0usize; 6];
        for v in &mut h {
            *v = read_u64(&mut r)? as usize;
        }
        let [dim, m, m0, n, entry, max_level] = h;
        let inserted_since_build = read_u64(&mut r)?;
        let file_len = std::fs::metadata(path)?.len() as usize;
        if dim == 0
            || m < 2
            || m0 < m
            || max_level > MAX_LEVEL
            || (n > 0 && entry >= n)
            || n.saturating_mul(dim * 4 + m0 * 4) > file_len
        {
            return Err(bad("inconsistent header"));
        }
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            let mut k = [0u8; 32];
            r.read_exact(&mut k)?;
            keys.push(ContentHash(k));
        }
        let count0 = read_u32s(&mut r, n)?;
        let layer0 = read_u32s(&mut r, n * m0)?;
        if count0.iter().any(|&c| c as usize > m0) || layer0.iter().any(|&l| l != NONE && l as usize >= n) {
            return Err(bad("layer-0 links out of range"));
        }
        let uppers = read_u64(&mut r)? as usize;
        if uppers > n {
            return Err(bad("too many upper-layer nodes"));
        }
        let mut upper = HashMap::with_capacity(uppers);
        for _ in 0..uppers {
            let [node, levels] = read_u32s(&mut r, 2)?[..] else { unreachable!("two values read") };
            if node as usize >= n || levels as usize > max_level {
                return Err(bad("upper-layer node out of range"));
            }
            let mut layers = Vec::with_capacity(levels as usize);
            for _ in 0..levels {
                let len = read_u32s(&mut r, 1)?[0] as usize;
                if len > m0 {
                    return Err(bad("upper-layer list too long"));
                }
                let l = read_u32s(&mut r, len)?;
                if l.iter().any(|&x| x as usize >= n) {
                    return Err(bad("upper-layer links out of range"));
                }
                layers.push(l);
            }
            upper.insert(node, layers);
        }
        let mut vectors = vec![0f32; n * dim];
        let mut buf = vec![0u8; dim * 4];
        for row in vectors.chunks_exact_mut(dim) {
            r.read_exact(&mut buf)?;
            for (x, b) in row.iter_mut().zip(buf.chunks_exact(4)) {
                *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        if r.read(&mut [0u8; 1])? != 0 {
            return Err(bad("trailing bytes"));
        }
        let graph = Graph { dim, m, m0, vectors, count0, layer0, upper, entry: entry as u32, max_level };
        Ok(Saved { graph, keys, fingerprint, inserted_since_build })
    }
}

fn write_u32s<W: Write>(w: &mut W, v: &[u32]) -> std::io::Result<()> {
    for x in v {
        w.write_all(&x.to_le_bytes())?;
    }
    Ok(())
}

fn read_u32s<R: Read>(r: &mut R, n: usize) -> std::io::Result<Vec<u32>> {
    let mut buf = vec![0u8; n * 4];
    r.read_exact(&mut buf)?;
    Ok(buf.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

fn read_u64<R: Read>(r: &mut R) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::random_unit;

    fn exact_top(g: &Graph, q: &[f32], k: usize, live: &[bool]) -> Vec<u32> {
        let mut all: Vec<(Ord32, u32)> =
            (0..g.len() as u32).filter(|&n| live[n as usize]).map(|n| (Ord32(-dot(q, g.vector(n))), n)).collect();
        all.sort_unstable();
        all.into_iter().take(k).map(|(_, n)| n).collect()
    }

    fn recall(g: &Graph, qs: &crate::vectors::Vectors, live: &[bool]) -> f64 {
        let mut found = 0;
        for i in 0..qs.len() {
            let truth = exact_top(g, qs.row(i), 10, live);
            let got: Vec<u32> = g.search(qs.row(i), 64, Some(live)).into_iter().map(|(n, _)| n).collect();
            assert!(got.iter().all(|&n| live[n as usize]), "a dead node was returned");
            found += truth.iter().filter(|t| got.contains(t)).count();
        }
        found as f64 / (qs.len() * 10) as f64
    }

    /// A graph with no nodes, for `insert` (layer 0 has 2m slots, as hnsw_rs builds it).
    fn empty(dim: usize, m: usize) -> Graph {
        Graph {
            dim,
            m,
            m0: 2 * m,
            vectors: vec![],
            count0: vec![],
            layer0: vec![],
            upper: HashMap::new(),
            entry: 0,
            max_level: 0,
        }
    }

    #[test]
    fn inserted_graph_finds_neighbours_and_skips_dead_nodes() {
        let docs = random_unit(1500, 24, 11);
        let mut g = empty(24, 8);
        for i in 0..docs.len() {
            g.insert(docs.row(i), 100, 5);
        }
        let qs = random_unit(50, 24, 12);
        let mut live = vec![true; g.len()];
        assert!(recall(&g, &qs, &live) > 0.95);
        for i in (0..live.len()).step_by(3) {
            live[i] = false;
        }
        assert!(recall(&g, &qs, &live) > 0.95);
    }

    #[test]
    fn save_and_load_round_trip_and_refuse_damage() {
        let docs = random_unit(300, 16, 13);
        let mut g = empty(16, 6);
        for i in 0..docs.len() {
            g.insert(docs.row(i), 50, 1);
        }
        let keys: Vec<ContentHash> = (0..g.len()).map(|i| ContentHash::of(&i.to_string())).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.bin");
        g.save(&path, &keys, "fp", 7).unwrap();
        let s = Graph::load(&path).unwrap();
        assert_eq!((s.fingerprint.as_str(), s.inserted_since_build), ("fp", 7));
        assert_eq!(s.keys, keys);
        assert_eq!(
            (s.graph.vectors.clone(), s.graph.layer0.clone(), s.graph.count0.clone()),
            (g.vectors.clone(), g.layer0.clone(), g.count0.clone())
        );
        assert_eq!((s.graph.upper.clone(), s.graph.entry, s.graph.max_level), (g.upper.clone(), g.entry, g.max_level));
        // A temporary file of a dead process is removed by the next save; a live one's is kept.
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let orphan = dir.path().join(format!(".{name}.4294967.abcdef.tmp"));
        let live = dir.path().join(format!(".{name}.{}.abcdef.tmp", std::process::id()));
        std::fs::write(&orphan, b"x").unwrap();
        std::fs::write(&live, b"x").unwrap();
        g.save(&path, &keys, "fp", 7).unwrap();
        assert!(!orphan.exists() && live.exists());
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 7, 100, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(Graph::load(&path).is_err(), "a file cut at {cut} bytes loaded");
        }
    }
}
