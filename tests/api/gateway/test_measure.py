"""calls.measure: what a call is billed for, from the server's usage object or tiktoken's counts. Pure, no I/O."""

from api.gateway.calls import measure


def test_a_sound_report_is_billed_as_reported():
    measured = measure({"prompt_tokens": 12, "completion_tokens": 7}, estimated_input=12, estimated_output=7)
    assert (measured.input_tokens, measured.output_tokens, measured.reported, measured.drift, measured.capped) == (
        12,
        7,
        True,
        False,
        False,
    )


def test_output_reported_past_the_allowance_is_billed_at_it_and_marked_capped():
    measured = measure(
        {"prompt_tokens": 12, "completion_tokens": 110}, estimated_input=12, estimated_output=10, output_cap=20
    )
    assert (measured.output_tokens, measured.capped) == (20, True)


def test_a_report_missing_its_prompt_count_is_still_capped_and_flagged():
    measured = measure({"completion_tokens": 110}, estimated_input=12, estimated_output=10, output_cap=20)
    assert (measured.input_tokens, measured.output_tokens, measured.reported, measured.drift, measured.capped) == (
        12,
        20,
        False,
        True,
        True,
    )


def test_tiktoken_counts_are_capped_but_not_marked_as_a_server_report():
    measured = measure(None, estimated_input=12, estimated_output=30, output_cap=20)
    assert (measured.output_tokens, measured.reported, measured.capped) == (20, False, False)


def test_an_embeddings_report_needs_no_completion_count():
    measured = measure({"prompt_tokens": 9}, estimated_input=9, estimated_output=0, output_cap=0)
    assert (measured.input_tokens, measured.output_tokens, measured.reported, measured.drift) == (9, 0, True, False)


def test_reasoning_tokens_are_read_from_the_completion_details_and_left_out_of_the_drift_check():
    # 900 hidden reasoning tokens in 1,000 completion tokens: the 100 delivered match tiktoken's count.
    reported = {
        "prompt_tokens": 12,
        "completion_tokens": 1_000,
        "completion_tokens_details": {"reasoning_tokens": 900},
        "prompt_tokens_details": {"cached_tokens": 8},
    }
    measured = measure(reported, estimated_input=12, estimated_output=100, output_cap=2_000)
    assert (measured.output_tokens, measured.reasoning_tokens, measured.cached_input_tokens, measured.drift) == (
        1_000,
        900,
        8,
        False,
    )
    assert measured.usage_object()["completion_tokens_details"] == {"reasoning_tokens": 900}


def test_reasoning_is_never_more_than_the_output_billed():
    reported = {"prompt_tokens": 12, "completion_tokens": 500, "completion_tokens_details": {"reasoning_tokens": 480}}
    measured = measure(reported, estimated_input=12, estimated_output=20, output_cap=300)
    assert (measured.output_tokens, measured.reasoning_tokens, measured.capped) == (300, 300, True)


def test_a_nonsense_reasoning_count_is_ignored():
    for bad in (-1, "12", True, None, 10**13):
        reported = {"prompt_tokens": 12, "completion_tokens": 7, "completion_tokens_details": {"reasoning_tokens": bad}}
        assert measure(reported, estimated_input=12, estimated_output=7).reasoning_tokens == 0
