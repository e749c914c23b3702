"""The one definition of "raw sample -> model input" per datamodule, and reading new raw samples from CSV."""

from __future__ import annotations

import pytest
import torch

from lightning_hw.data.base import standardize_splits
from lightning_hw.data.datasets.digits import Digits
from lightning_hw.data.io.files import read_input_csv
from lightning_hw.data.datasets.lfw import LFWFaces
from lightning_hw.data.preprocess import Preprocess
from lightning_hw.errors import ConfigError, DataError


def test_digits_are_stored_raw_and_prepared_by_their_preprocess():
    dm = Digits(standardize=True)
    dm.setup()
    raw_train, raw_test = dm.raw_data["train"][0], dm.raw_data["test"][0]
    assert raw_test.max() == 16 and raw_test.min() == 0  # scikit-learn's units, not rescaled
    # What the model sees is the training split's standardisation of x / 16, as before the refactor.
    expected = standardize_splits({"train": (raw_train / 16,), "test": (raw_test / 16,)})["test"][0]
    torch.testing.assert_close(dm.data["test"][0], expected)
    torch.testing.assert_close(dm.preprocess(raw_test), expected)
    assert dm.preprocess.describe()["divide_by"] == 16.0


def test_image_preprocess_scales_normalises_and_flattens_per_batch():
    dm = LFWFaces(image_size=16, channels=3, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2], flatten=True)
    dm.setup()
    images = dm.data["test"][0]
    assert images.dtype == torch.uint8  # stored raw
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    expected = ((images.float() / 255 - mean) / 0.2).flatten(1)
    torch.testing.assert_close(dm.model_batch(dm.data["test"])[0], expected)
    torch.testing.assert_close(dm.preprocess(images), expected)
    assert dm.preprocess.output_shape == (3 * 16 * 16,)
    description = dm.preprocess.describe()
    assert description["decode"]["resize_to"] == [16, 16] and description["normalization"] == "per channel"


def test_checkpoint_statistics_replace_recomputed_ones_with_a_warning():
    trained = Digits(standardize=True)
    trained.setup()
    state = trained.state_dict()
    statistics = state["preprocess"]["statistics"]
    assert set(statistics) == {"mean", "std"}
    statistics["mean"] = statistics["mean"] + 1.0  # as if the data had changed since

    later = Digits(standardize=True)
    later.setup()
    with pytest.warns(UserWarning, match="differ from the checkpoint's"):
        later.load_state_dict(state)
    raw_test = later.raw_data["test"][0]
    shifted = (raw_test / 16 - statistics["mean"]) / statistics["std"]
    torch.testing.assert_close(later.data["test"][0], shifted)  # already prepared data is redone


@pytest.mark.parametrize(("trained_with", "configured"), [(True, False), (False, True)])
def test_a_datamodule_that_prepares_inputs_otherwise_is_refused(trained_with, configured):
    """A checkpoint trained with (or without) standardisation is never scored with the other."""
    trained = Digits(standardize=trained_with)
    trained.setup()
    assert trained.state_dict()["preprocess"]["settings"]["divide_by"] == 16.0  # recorded even without statistics
    other = Digits(standardize=configured)
    other.setup()
    with pytest.raises(ConfigError, match="trained on inputs prepared otherwise .*normalization"):
        other.load_state_dict(trained.state_dict())


def test_nothing_is_saved_before_set_up():
    assert Digits(standardize=True).state_dict() == {}
    assert Preprocess((2,)).state_dict() == {}


@pytest.mark.parametrize(
    ("text", "ids", "first"),
    [
        ("1,5,3\n4,5,6\n", ["0", "1"], [1, 5, 3]),  # no header: the first row is a sample
        ("a,b,c\n1,5,3\n4,5,6\n", ["0", "1"], [1, 5, 3]),
        ("c,id,a,b\n3,x7,1,2\n", ["x7"], [3, 1, 2]),  # an id column names the rows
    ],
)
def test_csv_with_or_without_header(tmp_path, text, ids, first):
    path = tmp_path / "in.csv"
    path.write_text(text)
    got_ids, values = read_input_csv(path, (3,))
    assert got_ids == ids
    assert values[0].tolist() == first


def test_csv_columns_picked_by_feature_name(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,label,b, A \n7,1,20,10\n")
    ids, values = read_input_csv(path, (2,), feature_names=["a", "b"])
    assert ids == ["7"] and values.tolist() == [[10.0, 20.0]]


def test_csv_without_a_feature_column_is_refused_not_read_by_position(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("b,label\n20,1\n")  # two columns, as the model wants, but not the right ones
    with pytest.raises(DataError, match="lacks the feature column\\(s\\) a \\(it has 'b', 'label'\\)"):
        read_input_csv(path, (2,), feature_names=["a", "b"])


def test_csv_errors_name_the_file_line(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("a,b\n\n1,2\n\n3,x\n")
    with pytest.raises(DataError, match="line 5, column 2 \\(b\\) is 'x'"):
        read_input_csv(path, (2,))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,2,3\n1,2,3\n", "mixes names and numbers"),
        ("0,1,2\n5,6,7\n", "column numbers or data"),
        ("1,5,3\n4,,6\n", "line 2, column 2 is '', not a finite number"),
        ("1,5,3\n4,nan,6\n", "not a finite number"),
        ("1,2\n", "has 2 input columns, the model takes 3 values per sample"),
        ("a,b,c\n", "has a header but no rows"),
        (",5,3\n4,5,6\n", "line 1, column 1 is empty"),
        (",a,b,c\n0,1,5,3\n", "first column has no name \\(a saved pandas index"),
        ("x;y;z\n1;5;3\n", "separated by ';'"),
        ("1;5;3\n", "separated by ';'"),  # one sample: no header, whatever its first cell looks like
    ],
)
def test_csv_that_cannot_be_read_without_guessing(tmp_path, text, message):
    path = tmp_path / "in.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_input_csv(path, (3,))
