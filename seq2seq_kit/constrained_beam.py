"""The numerics of lexically constrained beam search (:func:`seq2seq_kit.decoding.beam_search`
with ``constraints``): outputs that hold given target phrases, by dynamic beam allocation
(Post & Vilar 2018, "Fast Lexically Constrained Decoding with Dynamic Beam Allocation for
Neural Machine Translation", NAACL; its candidates and its striping of the beam across banks
as in fairseq's ``LexicallyConstrainedBeamSearch``), built on the plain search's pieces
(:mod:`.beam`).

Each hypothesis carries where it stands in its sentence's constraints: a node of an
Aho-Corasick automaton over them (Aho & Corasick 1975; the longest end of its tokens that
begins a constraint) and which constraints its tokens hold, anywhere and in any order
(a constraint inside another one is held with it). At each step a sentence's candidates are
the 2 x width best extensions of its live hypotheses, each live hypothesis's best token, and
each one's next constraint tokens (those going on with a constraint it has begun, and those
beginning one it lacks). A candidate's bank is the number of constraint tokens it has met:
those of the constraints it holds and those of one it has begun. The beam is dealt out
across the banks in turn, highest first, each bank's best candidate first, so that
hypotheses that met more of the constraints keep places beside the likeliest ones.

EOS may end only a hypothesis that holds every constraint; one that reaches ``max_length``
without them is returned flagged, ranked after every output that holds them. With no
constraint for a sentence there is one bank, and its search is the plain one, output for
output.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .backend import Model
from .beam import (
    _NEG_INF,
    EarlyStopping,
    _Beams,
    _best_extensions,
    _Finished,
    _Stopping,
)
from .logits_processing import StepProcessor
from .vocab import Vocabulary

#: One output of a constrained search: its target ids (EOS excluded), its raw score, whether
#: it was cut at ``max_length``, and whether it holds every constraint of its sentence.
ConstrainedOutput = tuple[tuple[int, ...], float, bool, bool]


@dataclass(frozen=True)
class Automaton:
    """The Aho-Corasick automaton of every sentence's constraints in one batch: one trie per
    sentence, its nodes numbered across the batch, with failure links. A node stands for
    the longest end of a hypothesis's tokens that begins one of its sentence's constraints.

    Attributes:
        vocab_size: V, the target vocabulary's size (edge keys are ``node * V + token``).
        keys: int64 [E], sorted: ``parent * V + token`` of each trie edge.
        children: int64 [E]: the node each edge leads to.
        tokens: int64 [E]: the token of each edge.
        first_edge, edge_count: int64 [N]: each node's edges (contiguous in ``keys``).
        fail: int64 [N]: the node of the longest proper end of its path in the trie.
        root: int64 [N]: the root of each node's sentence.
        depth: int64 [N]: the tokens on each node's path.
        ends: bool [N, C]: the constraints that end at a node (its path or an end of it).
        ahead: bool [N, C]: the constraints a node's path begins (the node on their way).
        roots: int64 [B]: each sentence's root.
        lengths: int64 [B, C]: each sentence's constraints' tokens (0 past its last).
        present: bool [B, C]: the columns of ``lengths`` that are constraints.
    """

    vocab_size: int
    keys: np.ndarray
    children: np.ndarray
    tokens: np.ndarray
    first_edge: np.ndarray
    edge_count: np.ndarray
    fail: np.ndarray
    root: np.ndarray
    depth: np.ndarray
    ends: np.ndarray
    ahead: np.ndarray
    roots: np.ndarray
    lengths: np.ndarray
    present: np.ndarray

    @classmethod
    def build(cls, constraints: Sequence[Sequence[Sequence[int]]], vocab_size: int) -> Automaton:
        """The automaton of ``constraints``: per sentence, its phrases of target ids (each
        non-empty; none for an unconstrained sentence). Failure links by breadth-first
        search (Aho & Corasick 1975, algorithm 3)."""
        width = max((len(c) for c in constraints), default=0)
        trie = _Trie()
        roots = []
        for phrases in constraints:
            root = trie.add(phrases)
            _link_failures(trie, root)
            roots.append(root)
        n = len(trie.goto)
        edges = sorted(
            (p * vocab_size + tok, child, tok)
            for p in range(n)
            for tok, child in trie.goto[p].items()
        )
        keys = np.array([e[0] for e in edges], dtype=np.int64)
        counts = np.array([len(g) for g in trie.goto], dtype=np.int64)
        lengths = np.zeros((len(constraints), width), dtype=np.int64)
        for s, phrases in enumerate(constraints):
            lengths[s, : len(phrases)] = [len(p) for p in phrases]
        return cls(
            vocab_size=vocab_size,
            keys=keys,
            children=np.array([e[1] for e in edges], dtype=np.int64),
            tokens=np.array([e[2] for e in edges], dtype=np.int64),
            first_edge=np.cumsum(counts) - counts,
            edge_count=counts,
            fail=np.array([trie.fail[i] for i in range(n)], dtype=np.int64),
            root=np.array(trie.root, dtype=np.int64),
            depth=np.array(trie.depth, dtype=np.int64),
            ends=_mask(trie.ends, width),
            ahead=_mask(trie.ahead, width),
            roots=np.array(roots, dtype=np.int64),
            lengths=lengths,
            present=lengths > 0,
        )

    def advance(self, nodes: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """int64 [K]: the node after reading ``tokens[k]`` at ``nodes[k]`` (the trie's edge,
        else the failure links' until one has it, else the root)."""
        out = np.empty(len(nodes), dtype=np.int64)
        todo = np.arange(len(nodes))
        at = np.asarray(nodes, dtype=np.int64)
        tokens = np.asarray(tokens, dtype=np.int64)
        if not self.keys.size:  # no constraint in the batch: every node is a root
            out[:] = at
            return out
        last = self.keys.size - 1
        # each round follows one failure link: at most the longest constraint's length
        while todo.size:
            key = at * self.vocab_size + tokens[todo]
            where = np.minimum(np.searchsorted(self.keys, key), last)
            hit = self.keys[where] == key
            out[todo[hit]] = self.children[where[hit]]
            home = ~hit & (self.root[at] == at)
            out[todo[home]] = at[home]
            more = ~hit & ~home
            todo, at = todo[more], self.fail[at[more]]
        return out

    def begun(self, nodes: np.ndarray, held: np.ndarray) -> np.ndarray:
        """int64 [K]: for hypotheses at ``nodes`` holding ``held`` (bool [K, C]), the deepest
        node on each one's failure chain, its own first, whose path begins a constraint it
        lacks (else its root): the longest end of its tokens that a constraint it lacks
        begins with. (The chain holds every end of its tokens that begins a constraint.)"""
        at = np.array(nodes, dtype=np.int64, copy=True)

        def stuck(rows: np.ndarray) -> np.ndarray:
            nodes = at[rows]
            lacking = (self.ahead[nodes] & ~held[rows]).any(axis=1)
            return rows[~lacking & (nodes != self.root[nodes])]

        todo = stuck(np.arange(len(at)))
        while todo.size:  # one failure link a round: at most the longest constraint's length
            at[todo] = self.fail[at[todo]]
            todo = stuck(todo)
        return at

    def met_tokens(self, sentences: np.ndarray, begun: np.ndarray, held: np.ndarray) -> np.ndarray:
        """int64 [K]: the bank of hypotheses of ``sentences`` holding ``held`` (bool [K, C])
        with ``begun`` (:meth:`begun`): their constraints' tokens, and those of the one
        they have begun."""
        return (self.lengths[sentences] * held).sum(axis=1) + self.depth[begun]

    def next_tokens(self, begun: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The constraint tokens that would take hypotheses with ``begun`` (int64 [R],
        :meth:`begun`) holding ``held`` (bool [R, C]) on towards a constraint they lack:
        those going on with the one they have begun and those beginning one afresh,
        ``(rows, tokens)``, each [K]."""
        nodes = begun
        roots = self.root[nodes]
        own = np.where(nodes != roots, self.edge_count[nodes], 0)
        counts = own + self.edge_count[roots]
        rows = np.repeat(np.arange(len(nodes)), counts)
        within = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
        from_own = within < own[rows]
        edges = np.where(
            from_own,
            self.first_edge[nodes][rows] + within,
            self.first_edge[roots][rows] + within - own[rows],
        )
        wanted = (self.ahead[self.children[edges]] & ~held[rows]).any(axis=1)
        return rows[wanted], self.tokens[edges[wanted]]


@dataclass
class _Trie:
    """The tries of a batch's constraints under construction, one per sentence, its nodes
    numbered across the batch (a node's number indexes each list): ``goto`` its edges by
    token, ``root`` its sentence's root, ``depth`` the tokens on its path, ``ends`` the
    constraints ending at it, ``ahead`` those its path begins, ``fail`` its failure link."""

    goto: list[dict[int, int]] = field(default_factory=list)
    root: list[int] = field(default_factory=list)
    depth: list[int] = field(default_factory=list)
    ends: list[set[int]] = field(default_factory=list)
    ahead: list[set[int]] = field(default_factory=list)
    fail: dict[int, int] = field(default_factory=dict)

    def node(self, root: int, level: int) -> int:
        """A new node ``level`` tokens below ``root`` (-1: the node is a root), its number."""
        self.goto.append({})
        self.root.append(len(self.goto) - 1 if root < 0 else root)
        self.depth.append(level)
        self.ends.append(set())
        self.ahead.append(set())
        return len(self.goto) - 1

    def add(self, phrases: Sequence[Sequence[int]]) -> int:
        """The root of a new trie of one sentence's ``phrases`` (constraint c the c-th)."""
        root = self.node(-1, 0)
        self.fail[root] = root
        for c, phrase in enumerate(phrases):
            at = root
            for token in phrase:
                step = self.goto[at].get(int(token))
                if step is None:
                    step = self.goto[at][int(token)] = self.node(root, self.depth[at] + 1)
                at = step
                self.ahead[at].add(c)
            self.ends[at].add(c)
        return root


def _link_failures(trie: _Trie, root: int) -> None:
    """Sets the failure links of the trie under ``root`` breadth-first (Aho & Corasick 1975,
    algorithm 3), each node's ``ends`` gaining those of its link's: a parent's link is set
    before its children's need it."""
    queue = deque()
    for child in trie.goto[root].values():
        trie.fail[child] = root
        queue.append(child)
    while queue:
        parent = queue.popleft()
        for token, child in trie.goto[parent].items():
            back = trie.fail[parent]
            while back != root and token not in trie.goto[back]:
                back = trie.fail[back]
            trie.fail[child] = trie.goto[back].get(token, root)
            trie.ends[child] |= trie.ends[trie.fail[child]]
            queue.append(child)


def _mask(sets: list[set[int]], width: int) -> np.ndarray:
    out = np.zeros((len(sets), width), dtype=bool)
    for i, members in enumerate(sets):
        out[i, list(members)] = True
    return out


@dataclass
class _Progress:
    """Each live hypothesis's place in its sentence's constraints, rows as in
    :class:`~seq2seq_kit.beam._Beams`."""

    node: np.ndarray  # int64 [n_alive, w]: its automaton node
    begun: np.ndarray  # int64 [n_alive, w]: Automaton.begun of it
    held: np.ndarray  # bool [n_alive, w, C]: the constraints its tokens hold (True past the last)

    def keep(self, rows: np.ndarray) -> None:
        self.node, self.begun, self.held = self.node[rows], self.begun[rows], self.held[rows]


def constrained_outputs(
    model: Model,
    src_ids: np.ndarray,
    src_lengths: np.ndarray,
    vocab: Vocabulary,
    max_length: int,
    width: int,
    n_best: int,
    alpha: float,
    constraints: Sequence[Sequence[Sequence[int]]],
    process: StepProcessor | None = None,
    early_stopping: EarlyStopping = False,
) -> list[list[ConstrainedOutput]]:
    """Constrained beam search of ``width`` beams over int32 [B, S] sources, ``constraints[i]``
    the phrases (target ids, each non-empty) every output of sentence ``i`` must hold; per
    sentence up to ``n_best`` distinct outputs: those holding every phrase best first, then
    those that reached ``max_length`` without them. The options are
    :func:`seq2seq_kit.beam.best_outputs`' and checked alike; ``early_stopping`` counts and
    bounds the outputs that hold every phrase."""
    process = process or StepProcessor(vocab)
    n_sent = src_ids.shape[0]
    automaton = Automaton.build(constraints, len(vocab))
    state = model.encode(src_ids, src_lengths)
    beams = _Beams.start(n_sent, vocab.bos_id)
    roots = automaton.roots[:, None]
    progress = _Progress(roots, roots, ~automaton.present[:, None, :])
    finished = _Finished(n_sent, n_best, alpha)  # outputs holding every phrase
    flagged = _Finished(n_sent, n_best, alpha)  # the others
    stop = _Stopping(early_stopping, width, max_length, alpha)
    total = automaton.lengths.sum(axis=1)  # the top bank of each sentence
    eos = vocab.eos_id
    for t in range(max_length + 1):
        log_probs, state = model.step(beams.tokens.reshape(-1), state)
        n_alive, rows_per_sentence = beams.scores.shape
        sentences = np.repeat(beams.alive, rows_per_sentence)
        log_probs = process(log_probs, t, beams.history, sentences)
        holds = progress.held.all(axis=2).reshape(-1)
        best = _hold_back_eos(log_probs, ~holds, eos)
        steps = log_probs.reshape(n_alive, rows_per_sentence, -1)
        if t == max_length:
            _finish_at_max_length(beams, steps, holds, eos, finished, flagged, t)
            break
        chosen = _candidates(beams, progress, automaton, steps, best, width, total, eos)
        ends = chosen.is_eos & (chosen.position < width)
        for bucket, holding in ((finished, True), (flagged, False)):
            pick = np.flatnonzero(ends & (chosen.holds == holding))
            if pick.size:
                bucket.add(
                    beams, chosen.sentence[pick], chosen.beam[pick], chosen.score[pick], t, False
                )
        rows = _extend(beams, progress, automaton, chosen, width)
        done = stop.done(finished, beams, t)
        if done.any():
            keep = np.flatnonzero(~done)
            if keep.size == 0:
                break
            beams.keep(keep)
            progress.keep(keep)
            rows = rows[keep]
        state = model.reorder(state, rows.reshape(-1).astype(np.int64))
    kept, rest = finished.ranked(n_best), flagged.ranked(n_best)
    return [
        ([(*out, True) for out in holding] + [(*out, False) for out in lacking])[:n_best]
        for holding, lacking in zip(kept, rest, strict=True)
    ]


def _hold_back_eos(log_probs: np.ndarray, lacking: np.ndarray, eos: int) -> np.ndarray:
    """Rule EOS out, in place, for the rows ``lacking`` a constraint (bool [R]), unless it is
    all they have left (every other token ruled out by the output controls: then it ends
    them, flagged). Returns each row's best token, int64 [R], as
    :func:`~seq2seq_kit.beam._best_extensions` breaks ties (the lower id)."""
    rows = np.flatnonzero(lacking)
    kept = log_probs[rows, eos].copy()
    log_probs[rows, eos] = _NEG_INF
    best = log_probs.argmax(axis=1)
    stuck = ~np.isfinite(log_probs[rows, best[rows]])
    if stuck.any():
        log_probs[rows[stuck], eos] = kept[stuck]
        best[rows[stuck]] = eos
    return best


@dataclass(frozen=True)
class _Chosen:
    """A step's candidates, each sentence's in the order the beam is dealt out (flat, [K])."""

    sentence: np.ndarray  # its sentence's row in the beams
    beam: np.ndarray  # the hypothesis extended (its column)
    token: np.ndarray
    score: np.ndarray  # float64 raw score of the extended hypothesis
    node: np.ndarray  # its automaton node after the token
    begun: np.ndarray  # Automaton.begun of it
    held: np.ndarray  # bool [K, C]
    holds: np.ndarray  # bool: holds every constraint
    is_eos: np.ndarray
    position: np.ndarray  # its place in its sentence's order, from 0


def _candidates(
    beams: _Beams,
    progress: _Progress,
    automaton: Automaton,
    steps: np.ndarray,
    best: np.ndarray,
    width: int,
    total: np.ndarray,
    eos: int,
) -> _Chosen:
    """Each sentence's candidates (the 2 x ``width`` best extensions, each hypothesis's
    best token ``best``, each one's next constraint tokens; once each), banked and dealt
    out in turn: the best of the top bank, the best of the next one down..., then the
    second best of each, and so on (fairseq's stripes; Post & Vilar's allocation)."""
    n_alive, w, vocab_size = steps.shape
    flat_scores = beams.scores.reshape(-1)
    top = _best_extensions(beams.scores, steps, eos, 2 * width)
    top_rows = (np.arange(n_alive)[:, None] * w + top.beam)[top.valid]
    hyp_rows, hyp_tokens = automaton.next_tokens(
        progress.begun.reshape(-1), progress.held.reshape(n_alive * w, -1)
    )
    rows = np.concatenate([top_rows, np.arange(n_alive * w), hyp_rows])
    tokens = np.concatenate([top.token[top.valid], best, hyp_tokens]).astype(np.int64)
    keys = np.unique(rows * vocab_size + tokens)
    rows, tokens = np.divmod(keys, vocab_size)
    log_probs = steps.reshape(n_alive * w, vocab_size)[rows, tokens]
    score = flat_scores[rows] + log_probs  # float64, as the plain search sums
    live = np.isfinite(score)
    rows, tokens, score = rows[live], tokens[live], score[live]
    sentence, beam = np.divmod(rows, w)
    parent_node = progress.node.reshape(-1)[rows]
    node = automaton.advance(parent_node, tokens)
    held = progress.held.reshape(n_alive * w, -1)[rows] | automaton.ends[node]
    begun = automaton.begun(node, held)
    bank = automaton.met_tokens(beams.alive[sentence], begun, held)
    # rank within (sentence, bank): best first, the lower flat index (beam * V + token) on
    # ties, as the plain search ranks
    flat = beam * vocab_size + tokens
    order = np.lexsort((flat, -score, bank, sentence))
    group = sentence[order] * (total.max(initial=0) + 1) + bank[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    rank = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
    top_bank = total[beams.alive[sentence[order]]]
    stripe = rank * (top_bank + 1) + (top_bank - bank[order])
    order = order[np.lexsort((stripe, sentence[order]))]
    sentence = sentence[order]
    counts = np.bincount(sentence, minlength=n_alive)
    position = np.arange(order.size) - (np.cumsum(counts) - counts)[sentence]
    held = held[order]
    return _Chosen(
        sentence=sentence,
        beam=beam[order],
        token=tokens[order],
        score=score[order],
        node=node[order],
        begun=begun[order],
        held=held,
        holds=held.all(axis=1),
        is_eos=tokens[order] == eos,
        position=position,
    )


def _extend(
    beams: _Beams, progress: _Progress, automaton: Automaton, chosen: _Chosen, width: int
) -> np.ndarray:
    """Keep, per sentence, the first ``width`` candidates of ``chosen`` not ending in EOS
    (-inf where fewer remain), with their place in the constraints. Returns the decoder rows
    they extend, int [n_alive, width], for ``model.reorder``."""
    n_alive, w = beams.scores.shape
    live = ~chosen.is_eos
    seen = np.concatenate([[0], np.cumsum(live)])  # live candidates before each one
    counts = np.bincount(chosen.sentence, minlength=n_alive)
    starts = np.cumsum(counts) - counts
    rank = seen[:-1] - seen[starts][chosen.sentence]
    pick = np.flatnonzero(live & (rank < width))
    at = (chosen.sentence[pick], rank[pick])
    scores = np.full((n_alive, width), _NEG_INF)
    parents = np.zeros((n_alive, width), dtype=np.int64)
    tokens = np.zeros((n_alive, width), dtype=np.int32)  # PAD where no hypothesis lives
    node = np.repeat(automaton.roots[beams.alive][:, None], width, axis=1)
    begun = node.copy()
    held = np.ones((n_alive, width, progress.held.shape[2]), dtype=bool)
    scores[at], parents[at], tokens[at] = chosen.score[pick], chosen.beam[pick], chosen.token[pick]
    node[at], begun[at], held[at] = chosen.node[pick], chosen.begun[pick], chosen.held[pick]
    kept = np.take_along_axis(beams.history, parents[:, :, None], axis=1)
    beams.scores, beams.tokens = scores, tokens
    beams.history = np.concatenate([kept, tokens[:, :, None]], axis=2)
    progress.node, progress.begun, progress.held = node, begun, held
    return np.arange(n_alive)[:, None] * w + parents


def _finish_at_max_length(
    beams: _Beams,
    steps: np.ndarray,
    holds: np.ndarray,
    eos: int,
    finished: _Finished,
    flagged: _Finished,
    t: int,
) -> None:
    """The last step, as the plain search's (:func:`seq2seq_kit.beam._finish_at_max_length`):
    a live hypothesis whose best next token is EOS ends, any other is truncated; each into
    ``finished`` if it ``holds`` every constraint (bool [n_alive * w]), else ``flagged``."""
    live = np.isfinite(beams.scores)
    ends = live & (steps.argmax(axis=2) == eos)
    holds = holds.reshape(live.shape)
    for bucket, holding in ((finished, holds), (flagged, ~holds)):
        rows, parents = np.nonzero(ends & holding)
        scores = beams.scores[rows, parents] + steps[rows, parents, eos]
        bucket.add(beams, rows, parents, scores, t, truncated=False)
        rows, parents = np.nonzero(live & ~ends & holding)
        bucket.add(beams, rows, parents, beams.scores[rows, parents], t, truncated=True)
