"""MinHash: bit-identity with datasketch, set-algebra properties, estimation error."""

import math

import numpy as np
import pytest
from datasketch import MinHash
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

from dedup import minhash_signatures
from dedup.minhash import estimate_jaccard, fast_hash32

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


@pytest.mark.parametrize("scheme", ["datasketch-affine32", "datasketch-legacy", "fast"])
@settings(deadline=None, max_examples=80)
@given(a=token_set, b=token_set, data=st.data())
def test_order_duplicates_and_union(scheme, a, b, data):
    shuffled = data.draw(st.permutations(a + a))
    sig = minhash_signatures([a, shuffled, b, a + b], num_perm=64, seed=3, scheme=scheme)
    np.testing.assert_array_equal(sig[0], sig[1])  # order and duplicate invariance
    np.testing.assert_array_equal(sig[3], np.minimum(sig[0], sig[2]))  # sig(A u B) = min


def test_rejects_non_bytes_and_unknown_scheme():
    with pytest.raises(TypeError):
        minhash_signatures([["text"]])
    with pytest.raises(ValueError, match="unknown MinHash scheme"):
        minhash_signatures([[b"a"]], scheme="nope")


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
