"""MinHash: bit-identity with datasketch, set-algebra properties, estimation error."""

import math

import numpy as np
import pytest
from datasketch import MinHash
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

from dedup import minhash_signatures
from dedup.minhash import estimate_jaccard, fast_hash32, fss_reference

token = st.binary(min_size=0, max_size=40) | st.lists(st.sampled_from([b"a", b"bc", b"", b"word"]), max_size=6).map(b" ".join)
token_set = st.lists(token, min_size=0, max_size=60)


def datasketch_sig(tokens, num_perm, seed, scheme):
    if scheme == "fast":
        m = MinHash(num_perm=num_perm, seed=seed, scheme="affine32", hashfunc=fast_hash32)
    else:
        m = MinHash(num_perm=num_perm, seed=seed, scheme=scheme.removeprefix("datasketch-"))
    if tokens:
        m.update_batch(tokens)
    return m.hashvalues


def test_legacy_test_vector():
    tokens = [b"minhash", b"is", b"a", b"probabilistic", b"data", b"structure"]
    sig = minhash_signatures([tokens], num_perm=16, seed=1, scheme="datasketch-legacy")[0]
    assert sig.tolist() == [297616339, 339931219, 113505080, 311917730, 1735256, 278730948, 249258812,
                            306660385, 584752112, 1350152209, 120511132, 693093118, 1255353847,
                            230093460, 1461111760, 278804245]


@pytest.mark.parametrize("scheme", ["datasketch-affine32", "datasketch-legacy", "fast"])
@settings(deadline=None, max_examples=60)
@given(sets=st.lists(token_set, min_size=1, max_size=5), num_perm=st.sampled_from([1, 16, 128, 257]),
       seed=st.integers(0, 2**32 - 1))
def test_bit_identical_to_datasketch(scheme, sets, num_perm, seed):
    ours = minhash_signatures(sets, num_perm=num_perm, seed=seed, scheme=scheme)
    for i, tokens in enumerate(sets):
        ref = datasketch_sig(tokens, num_perm, seed, scheme)
        assert ours.dtype == ref.dtype
        np.testing.assert_array_equal(ours[i], ref)


@pytest.mark.parametrize("scheme", ["datasketch-affine32", "datasketch-legacy", "fast", "fss"])
@settings(deadline=None, max_examples=80)
@given(a=token_set, b=token_set, data=st.data())
def test_order_duplicates_and_union(scheme, a, b, data):
    shuffled = data.draw(st.permutations(a + a))
    sig = minhash_signatures([a, shuffled, b, a + b], num_perm=64, seed=3, scheme=scheme)
    np.testing.assert_array_equal(sig[0], sig[1])  # order and duplicate invariance
    np.testing.assert_array_equal(sig[3], np.minimum(sig[0], sig[2]))  # sig(A u B) = min


@settings(deadline=None, max_examples=40)
@given(sets=st.lists(token_set, min_size=1, max_size=4), num_perm=st.sampled_from([1, 16, 128, 257]),
       seed=st.integers(0, 2**32 - 1))
def test_fss_kernel_equals_the_reference(sets, num_perm, seed):
    """The kernel (early stop at the first round that fills every bin) gives the pure-Python
    reference's values (all K rounds), bit for bit: the stopping rule changes nothing."""
    ours = minhash_signatures(sets, num_perm=num_perm, seed=seed, scheme="fss")
    for i, tokens in enumerate(sets):
        np.testing.assert_array_equal(ours[i], fss_reference(tokens, num_perm, seed))


def test_rejects_non_bytes_and_unknown_scheme():
    with pytest.raises(TypeError):
        minhash_signatures([["text"]])
    with pytest.raises(ValueError, match="unknown MinHash scheme"):
        minhash_signatures([[b"a"]], scheme="nope")


def test_estimate_jaccard_takes_sequences_and_refuses_empty_or_unequal_signatures():
    """Lists gave AttributeError ('list' has no attribute 'shape'); empty signatures gave nan with a warning."""
    assert estimate_jaccard([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    for a, b in (([], []), ([1, 2], [1, 2, 3])):
        with pytest.raises(ValueError, match="signature"):
            estimate_jaccard(a, b)


@pytest.mark.parametrize("scheme", ["fast", "fss", "datasketch-legacy"])
def test_token_sets_from_a_generator_are_those_of_a_list(scheme):
    """minhash_signatures read its token_sets twice (lengths, then tokens): a generator's second pass was empty,
    and the kernel read tokens past the end of the empty buffer (other rows' signatures, memory's garbage, or a
    segmentation fault; found by the API probe)."""
    sets = [[b"a", b"b"], [b"b", b"c", b"d"], [], [b"a", b"b"]]
    want = minhash_signatures(sets, num_perm=16, scheme=scheme)
    np.testing.assert_array_equal(minhash_signatures((s for s in sets), num_perm=16, scheme=scheme), want)
    np.testing.assert_array_equal(minhash_signatures(iter(sets), num_perm=16, scheme=scheme), want)


@pytest.mark.parametrize("jaccard", [0.2, 0.5, 0.8, 0.9])
def test_fast_scheme_estimation_error(jaccard):
    """The fast scheme's estimate of J has the mean and variance of K Bernoulli(J) trials.

    With M independent pairs, the mean estimate has standard error sqrt(J(1-J)/(K M));
    we allow 4.5 of them (two-sided p ~ 7e-6). The sample variance over M pairs, divided
    by J(1-J)/K, follows chi2(M-1)/(M-1) under ideal independent permutations; we accept the
    central 1 - 1e-4 interval of that distribution.
    """
    K, M, union = 128, 300, 300
    inter = round(jaccard * union)
    rng = np.random.default_rng(12345)
    est = np.empty(M)
    for trial in range(M):
        toks = [rng.bytes(12) for _ in range(union)]
        only = (union - inter) // 2
        a = toks[:inter] + toks[inter:inter + only]
        b = toks[:inter] + toks[inter + only:]
        true_j = inter / union
        sig = minhash_signatures([a, b], num_perm=K, seed=1, scheme="fast")
        est[trial] = estimate_jaccard(sig[0], sig[1]) - true_j
    var = jaccard * (1 - jaccard) / K
    assert abs(est.mean()) <= 4.5 * math.sqrt(var / M), est.mean()
    ratio = est.var(ddof=1) / var
    lo, hi = chi2.ppf([0.5e-4, 1 - 0.5e-4], M - 1) / (M - 1)
    assert lo <= ratio <= hi, (ratio, lo, hi)


def _pairs(rng, union, inter, trials):
    """``trials`` independent pairs (A, B) of random 12-byte tokens with |A u B| = union,
    |A n B| = inter (the rest split between A only and B only)."""
    for _ in range(trials):
        toks = [rng.bytes(12) for _ in range(union)]
        only = (union - inter) // 2
        yield toks[:inter] + toks[inter:inter + only], toks[:inter] + toks[inter + only:]


@pytest.mark.parametrize("union,inter", [(3, 2), (40, 8), (40, 20), (40, 32), (300, 60), (300, 150), (300, 240),
                                         (300, 270)])
def test_fss_is_unbiased_with_variance_at_most_minhash(union, inter):
    """FSS: E[J^] = J exactly and Var[J^] <= J(1-J)/K for every set size (module docstring
    of dedup.minhash). Sizes cover the regimes: 3 tokens (bins left empty after K rounds,
    filled in rounds K + b), 40 (many rounds), 300 (a few rounds).

    Over M independent pairs the mean error has standard error at most sqrt(J(1-J)/(K M)):
    we allow 4.5 of them (two-sided p ~ 7e-6). If Var[J^] were J(1-J)/K, the sample variance
    over it would follow chi2(M-1)/(M-1); a variance no larger makes exceeding that
    distribution's 1 - 1e-4 quantile rarer still (one-sided test of the upper bound).
    """
    K, M = 128, 400
    j = inter / union
    rng = np.random.default_rng(union * 1000 + inter)
    err = np.empty(M)
    for t, (a, b) in enumerate(_pairs(rng, union, inter, M)):
        sig = minhash_signatures([a, b], num_perm=K, seed=7, scheme="fss")
        err[t] = estimate_jaccard(sig[0], sig[1]) - j
    bound = j * (1 - j) / K
    assert abs(err.mean()) <= 4.5 * math.sqrt(bound / M), err.mean()
    assert err.var(ddof=1) / bound <= chi2.ppf(1 - 1e-4, M - 1) / (M - 1), err.var(ddof=1) / bound


@pytest.mark.parametrize("jaccard", [0.5, 0.8])
def test_fss_variance_is_hypergeometric_when_one_round_fills_every_bin(jaccard):
    """With |A u B| = 2000 >> K ln K (~621 at K = 128) the first round leaves a bin empty
    with probability K e^(-2000/K) ~ 2e-5, so the K bins' winners are a uniform sample
    without replacement of A u B: Var[J^] = J(1-J)/K * (U-K)/(U-1). The sample variance over
    M pairs, divided by it, must lie in the central 1 - 1e-4 interval of chi2(M-1)/(M-1)."""
    K, M, union = 128, 300, 2000
    inter = round(jaccard * union)
    j = inter / union
    rng = np.random.default_rng(99)
    err = np.empty(M)
    for t, (a, b) in enumerate(_pairs(rng, union, inter, M)):
        sig = minhash_signatures([a, b], num_perm=K, seed=1, scheme="fss")
        err[t] = estimate_jaccard(sig[0], sig[1]) - j
    var = j * (1 - j) / K * (union - K) / (union - 1)
    assert abs(err.mean()) <= 4.5 * math.sqrt(var / M), err.mean()
    lo, hi = chi2.ppf([0.5e-4, 1 - 0.5e-4], M - 1) / (M - 1)
    assert lo <= err.var(ddof=1) / var <= hi, err.var(ddof=1) / var


def test_fss_empty_set_and_golden_vector():
    """An empty set fills nothing (0xFFFFFFFF everywhere, like the other schemes); the
    values of a fixed set are pinned (saved indexes depend on them: see test_golden)."""
    sig = minhash_signatures([[], [b"minhash", b"is", b"a", b"probabilistic", b"data", b"structure"]],
                             num_perm=16, seed=1, scheme="fss")
    assert (sig[0] == 0xFFFFFFFF).all()
    assert sig[1].tolist() == [238342301, 649466114, 1011843691, 234700034, 110878119, 236237124, 505691682,
                               470786347, 36977064, 61915594, 307210032, 513358046, 192134937, 26695451,
                               252953692, 18665174]


def test_fss_precision_and_recall_on_planted_near_duplicates_match_fast():
    """At the same banding (9 x 13, datasketch's optimum for T = 0.8, K = 128) the fss
    scheme finds the planted near duplicates of a 50,000-document corpus (~1 KB each, 5%
    exact and 10% near copies, exact-Jaccard truth) with precision and recall within 0.01 of
    the fast scheme's.

    Why 0.01 is a fair bound and not luck: a true pair of Jaccard s is found with
    probability p(s) = 1 - (1 - s^13)^9, independently for the two schemes, so two equally
    good schemes' recalls differ by chance with standard deviation sqrt(2 sum p(1-p)) / N
    over the N true duplicates. The test computes that deviation from the truth's Jaccards
    and checks that 0.01 is at least two of them, then checks the differences. fss's band
    probability is below s^13 by a factor prod_j (1 - j (1-s) / (s (U - j))) (distinct
    winners, U = |A u B|): ~0.90 at U = 200 near s = 0.8, which moves recall by
    a few thousandths at most here (most planted pairs are far above T)."""
    from dedup.config import DedupConfig
    from dedup.index import LSHBloomIndex
    from dedup.params import candidate_probability, plan_index
    from dedup.sketch import Sketcher
    from dedup.synthetic import earlier_jaccards, generate_corpus

    table = generate_corpus(50_000, mean_bytes=1000, exact_frac=0.05, near_frac=0.10, seed=11)
    best = np.array([max(js, default=0.0) for js in earlier_jaccards(table, 5)])
    truth = best >= 0.8
    texts = table.column("text")
    p = np.array([candidate_probability(s, 9, 13) for s in best[truth]])
    chance_sd = math.sqrt(2 * float((p * (1 - p)).sum())) / truth.sum()
    assert 0.01 >= 2 * chance_sd, chance_sd

    def precision_recall(scheme):
        cfg = DedupConfig(scheme=scheme)
        plan = plan_index(cfg.threshold, cfg.num_perm, len(texts), cfg.fp)
        assert (plan.bands, plan.rows) == (9, 13)
        removed = LSHBloomIndex(plan, exact_fp=cfg.exact_fp).process(
            Sketcher(cfg, plan.bands, plan.rows)(texts), np.arange(len(texts))).reason != 0
        tp = int((removed & truth).sum())
        return tp / removed.sum(), tp / truth.sum()

    (p_fast, r_fast), (p_fss, r_fss) = precision_recall("fast"), precision_recall("fss")
    assert abs(p_fss - p_fast) <= 0.01, (p_fss, p_fast)
    assert abs(r_fss - r_fast) <= 0.01, (r_fss, r_fast)


def test_every_scheme_knows_its_name():
    """``SCHEMES`` (public, README) maps each name to a Scheme that carries it; a shrink had dropped the field."""
    from dedup.minhash import SCHEMES, get_scheme

    assert all(get_scheme(name).name == name == s.name for name, s in SCHEMES.items())
