from bot.citations import has_citation, renumber


def test_renumbers_in_order_of_appearance_and_drops_invalid():
    cited = renumber("You get 25 days [3]. Carry over five [1][3]. Ask HR [9].", source_count=3)
    assert cited.text == "You get 25 days [1]. Carry over five [2][1]. Ask HR."
    assert cited.order == [2, 0]
    assert cited.dropped == 1


def test_groups_and_ranges():
    cited = renumber("Both apply [2, 1] and [1-2].", source_count=2)
    assert cited.text == "Both apply [1][2] and [2][1]."
    assert cited.order == [1, 0]


def test_no_valid_marker():
    cited = renumber("Nothing cited [0] here [5].", source_count=2)
    assert cited.order == [] and not has_citation(cited.text)
