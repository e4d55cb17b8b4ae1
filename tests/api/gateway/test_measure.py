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
