import pytest
import torch

from course_utils.checks import assert_close, check_shape


def test_check_shape_accepts_match_and_wildcards():
    check_shape(torch.zeros(2, 3, 4), (2, None, 4), "x")


@pytest.mark.parametrize("expected", [(2, 3), (2, 3, 5), (3, None, 4)])
def test_check_shape_names_expected_and_got(expected):
    with pytest.raises(AssertionError) as info:
        check_shape(torch.zeros(2, 3, 4), expected, "scores")
    message = str(info.value)
    assert "scores" in message and "(2, 3, 4)" in message


def test_check_shape_rejects_non_tensor():
    with pytest.raises(AssertionError, match="expected a torch.Tensor"):
        check_shape([1, 2], (2,), "x")


def test_assert_close_passes_within_tolerance():
    assert_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-9]), "v")


def test_assert_close_reports_errors():
    with pytest.raises(AssertionError) as info:
        assert_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]), "logits", atol=1e-6)
    message = str(info.value)
    assert "logits" in message and "max abs error 0.5" in message and "1 of 2" in message
    assert "expected [2.5], got [2] (at flat positions [1])" in message, "both values, where they differ"


def test_assert_close_shows_a_few_values_not_the_whole_tensor():
    got = torch.zeros(1000)
    with pytest.raises(AssertionError) as info:
        assert_close(got, torch.ones(1000), "big")
    message = str(info.value)
    assert "expected [1, 1, 1, 1], ..., got [0, 0, 0, 0], ..." in message and len(message) < 400
    assert "max rel error 1" in message
    with pytest.raises(AssertionError, match=r"max rel error inf"):
        assert_close(torch.ones(2), torch.zeros(2), "against zeros")


def test_assert_close_reports_shape_mismatch():
    with pytest.raises(AssertionError, match=r"expected shape \(3,\), got \(2,\)"):
        assert_close(torch.zeros(2), torch.zeros(3), "x")


def test_assert_close_nan_patterns():
    nan = float("nan")
    assert_close(torch.tensor([nan, 1.0]), torch.tensor([nan, 1.0]), "same NaN")
    with pytest.raises(AssertionError, match="NaN pattern"):
        assert_close(torch.tensor([nan, 1.0]), torch.tensor([0.0, 1.0]), "x")


def test_python_lines_run_tells_a_loop_from_a_vectorised_function():
    import sys

    from course_utils.checks import python_lines_run

    def looped(x):
        total = 0.0
        for value in x.tolist():
            total += value
        return total

    def vectorised(x):
        return x.sum()

    small, large = torch.ones(4), torch.ones(400)
    assert python_lines_run(vectorised, small) == python_lines_run(vectorised, large)
    assert python_lines_run(looped, large) > python_lines_run(looped, small) + 300
    before = sys.gettrace()
    python_lines_run(vectorised, small)
    assert sys.gettrace() is before, "the tracer set before is put back"
