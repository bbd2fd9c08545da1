"""The contact-based DeSync offset classifier: the offset between visible contacts and audible onsets is recovered,
windows without evidence count as in sync, and a model without a contact head is refused."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from foleyflow.errors import EvalError
from foleyflow.eval.contact_offset import ContactOffsetClassifier
from foleyflow.eval.desync import OFFSETS_S, clip_desync
from foleyflow.models.av_ssl import SyncAVConfig, SyncAVModel
from foleyflow.models.visual import SyncEncoderConfig

from test_eval_onsets import click_track

SR = 16000
CONTACTS = np.array([0.4, 1.0, 1.44, 2.6, 3.2, 4.0])


def tiny_model(event_head: bool = True) -> SyncAVModel:
    torch.manual_seed(0)
    vis = SyncEncoderConfig(image_size=32, patch_size=16, width=32, depth=1, num_heads=2, out_dim=32)
    return SyncAVModel(SyncAVConfig(visual=vis, head_width=32, head_depth=1, head_heads=2, event_head=event_head))


class KnownContacts(ContactOffsetClassifier):
    """The classifier with its video half replaced by known contacts (probability 0.9 at them, 0.05 elsewhere)."""

    def contact_probs(self, frames):
        n = (frames.shape[0] - 16) // 8 * 4 + 8
        p = np.full(n, 0.05)
        p[np.round(CONTACTS / self.step_s).astype(int)] = 0.9
        return p


@pytest.mark.parametrize("lag", [0.0, 0.4, -0.6, 1.2])
def test_recovers_the_lag_of_the_audio(lag):
    clf = KnownContacts(tiny_model())
    frames = np.zeros((120, 32, 32, 3), np.uint8)
    heard = [t for t in CONTACTS + lag if 0.0 <= t < 4.7]
    audio = click_track(heard, dur=4.8)[0].astype(np.float32)
    scores = clf(frames, audio)
    assert scores.shape == (21,)
    assert OFFSETS_S[int(np.argmax(scores))] == pytest.approx(lag)


def test_windows_without_onsets_or_contacts_count_as_in_sync():
    clf = KnownContacts(tiny_model())
    frames = np.zeros((120, 32, 32, 3), np.uint8)
    silent = np.zeros(int(4.8 * SR), np.float32)
    assert OFFSETS_S[int(np.argmax(clf(frames, silent)))] == 0.0
    real = ContactOffsetClassifier(tiny_model())
    real.contact_probs = lambda f: np.full(60, 0.1)  # nothing looks like a contact
    audio = click_track(CONTACTS + 0.4, dur=4.8)[0].astype(np.float32)
    assert OFFSETS_S[int(np.argmax(real(frames, audio)))] == 0.0


def test_real_model_runs_through_the_desync_protocol():
    clf = ContactOffsetClassifier(tiny_model())
    frames = np.random.default_rng(0).integers(0, 255, (200, 32, 32, 3), dtype=np.uint8)
    audio = click_track(CONTACTS, dur=8.0).astype(np.float32)
    out = clip_desync("c", frames, audio, clf)
    assert len(out.offsets_s) == 2 and all(o in OFFSETS_S for o in out.offsets_s)
    assert clf.contact_probs(frames[:120]).shape == (60,)


def test_refuses_models_without_a_contact_head_and_bad_input():
    with pytest.raises(EvalError, match="contact head"):
        ContactOffsetClassifier(tiny_model(event_head=False))
    clf = ContactOffsetClassifier(tiny_model())
    with pytest.raises(EvalError, match="mono audio"):
        clf(np.zeros((120, 32, 32, 3), np.uint8), np.zeros((2, 100), np.float32))
    with pytest.raises(EvalError, match="at least 16 frames"):
        clf(np.zeros((8, 32, 32, 3), np.uint8), np.zeros(1000, np.float32))


def test_loader_picks_the_contact_classifier_from_the_provenance(tmp_path):
    from foleyflow.eval.av_models import SyncOffsetClassifier, load_offset_classifier
    from foleyflow.models.av_ssl import save_av_model

    save_av_model(tmp_path / "c.safetensors", tiny_model(), provenance={"offset_method": "contacts"})
    save_av_model(tmp_path / "o.safetensors", tiny_model(), provenance={})
    contact = load_offset_classifier(tmp_path / "c.safetensors")
    assert isinstance(contact, ContactOffsetClassifier) and contact.frame_size == 32 and contact.video_fps == 25.0
    assert isinstance(load_offset_classifier(tmp_path / "o.safetensors"), SyncOffsetClassifier)


def test_video_windows_are_encoded_once():
    clf = ContactOffsetClassifier(tiny_model())
    calls = []
    real = clf.model.contacts
    clf.model.contacts = lambda v: calls.append(1) or real(v)
    frames = np.random.default_rng(1).integers(0, 255, (120, 32, 32, 3), dtype=np.uint8)
    first = clf.contact_probs(frames)
    again = clf.contact_probs(frames.copy())
    assert len(calls) == 1 and np.array_equal(first, again)
    clf.contact_probs(frames[::-1])
    assert len(calls) == 2
