"""Password policy (authsvc.rules.passwords) against the attacks and requirements it exists for.

ASVS 5.0 V6.2 and NIST SP 800-63B rev. 4 §3.1.1.2: at least 15 characters for a password-only
login, at least 64 permitted, no composition rules, whole-password blocklist, context words,
NFC, code points counted, nothing truncated.
"""

from __future__ import annotations

import unicodedata

import pytest

from authsvc.rules.passwords import (
    Blocklist,
    PasswordRules,
    load_default_blocklist,
    normalize_password,
    password_problems,
)

RULES = PasswordRules(min_length=15)
BLOCKLIST = load_default_blocklist()
USER = "alice.example"

# Random-looking, not on any list, no pattern: the base for length tests.
FILLER = "Tq8vLr2mWz5kXc9pJh4nBd7fGs3yNe6aUo1iKw0x" * 26


def problems(
    password: str, *, username: str = USER, rules: PasswordRules = RULES
) -> list[str]:
    return password_problems(
        password, username=username, rules=rules, blocklist=BLOCKLIST
    )


def accepted(password: str, **kwargs) -> bool:
    return problems(password, **kwargs) == []


# --- length (V6.2.1, V6.2.9) -------------------------------------------------------------------


@pytest.mark.asvs("V6.2.1")
def test_fourteen_characters_is_rejected_with_the_reason():
    assert problems(FILLER[:14]) == ["Password is 14 characters; the minimum is 15."]


@pytest.mark.asvs("V6.2.1")
def test_fifteen_characters_is_accepted():
    assert accepted(FILLER[:15])


@pytest.mark.asvs("V6.2.1")
def test_defaults_are_nist_single_factor_minimum_and_asvs_cap():
    assert PasswordRules() == PasswordRules(
        min_length=15, max_length=1024, context_words=("authsvc",)
    )


@pytest.mark.asvs("V6.2.1")
@pytest.mark.parametrize("length", [0, 1, 7, 8, 14])
def test_every_length_under_the_minimum_is_rejected(length):
    assert any("the minimum is 15" in p for p in problems(FILLER[:length]))


@pytest.mark.asvs("V6.2.1")
def test_rules_refuse_a_minimum_below_the_asvs_floor_of_eight():
    with pytest.raises(ValueError, match="min_length"):
        PasswordRules(min_length=7)


@pytest.mark.asvs("V6.2.9")
@pytest.mark.parametrize("length", [64, 128, 1024])
def test_long_passwords_up_to_the_cap_are_accepted(length):
    assert accepted(FILLER[:length])


@pytest.mark.asvs("V6.2.9")
def test_one_character_over_the_cap_is_rejected_not_truncated():
    assert problems(FILLER[:1025]) == ["Password is longer than 1024 characters."]


@pytest.mark.asvs("V6.2.9")
def test_megabyte_password_is_rejected_cheaply():
    assert problems("x" * 1_000_000) == ["Password is longer than 1024 characters."]


@pytest.mark.asvs("V6.2.9")
@pytest.mark.parametrize("max_length", [0, 63])
def test_rules_refuse_a_cap_below_64(max_length):
    with pytest.raises(ValueError, match="max_length"):
        PasswordRules(max_length=max_length)


@pytest.mark.asvs("V6.2.9")
def test_rules_refuse_a_cap_below_the_minimum():
    with pytest.raises(ValueError, match="max_length"):
        PasswordRules(min_length=100, max_length=99)


# --- no composition rules (V6.2.5) -------------------------------------------------------------


@pytest.mark.asvs("V6.2.5")
@pytest.mark.parametrize(
    "password",
    [
        pytest.param("glimmerquartzpond", id="lowercase-letters-only"),
        pytest.param("73920581649207315", id="digits-only"),
        pytest.param("blue kettle drift", id="spaces-inside"),
        pytest.param("correct horse battery staple", id="passphrase"),
        pytest.param("sunrise 🌅 over tea ☕ now", id="emoji"),
        pytest.param("春眠不觉晓处处闻啼鸟夜来风雨声花落", id="cjk"),
        pytest.param("пароль для входа в систему", id="cyrillic"),
        pytest.param("  leading and trailing spaces  ", id="edge-spaces"),
        pytest.param("GLIMMERQUARTZPOND", id="uppercase-only"),
    ],
)
def test_any_composition_is_accepted(password):
    assert problems(password) == []


@pytest.mark.asvs("V6.2.5")
def test_no_message_asks_for_character_classes():
    for password in ["a" * 3, "1" * 20, FILLER[:10], "password"]:
        for message in problems(password):
            for word in ("digit", "uppercase", "lowercase", "symbol", "special"):
                assert word not in message.lower()


# --- common and breached passwords (V6.2.4, V6.2.12) -------------------------------------------


@pytest.mark.asvs("V6.2.4")
def test_bundled_blocklist_has_at_least_ten_thousand_entries():
    assert len(BLOCKLIST) >= 10_000


@pytest.mark.asvs("V6.2.4")
def test_bundled_blocklist_is_loaded_once():
    assert load_default_blocklist() is load_default_blocklist()


@pytest.mark.asvs("V6.2.4")
@pytest.mark.parametrize(
    "password",
    [
        "password",
        "PASSWORD",
        "PassWord",
        "qwerty",
        "iloveyou",
        "ILoveYou",
        "123456789",
        "dragon",
    ],
)
def test_top_passwords_are_rejected_in_any_case(password):
    assert (
        "Password is on a list of common or breached passwords; choose another."
        in problems(password)
    )


@pytest.mark.asvs("V6.2.4", "V6.2.12")
@pytest.mark.parametrize(
    "password",
    ["friend of emily", "Friend Of Emily", "1Q2W3E4R5T6Y7U8I9O0P", "1qaz2wsx3edc4rfv"],
)
def test_long_list_entries_that_meet_the_length_rule_are_still_rejected(password):
    assert problems(password) == [
        "Password is on a list of common or breached passwords; choose another."
    ]


@pytest.mark.asvs("V6.2.4")
def test_blocklist_matches_the_whole_password_not_substrings():
    # NIST rev. 4: compare "the entire password". A passphrase containing "password" is fine.
    assert "password" in BLOCKLIST
    assert accepted("my password is a blue kettle")


@pytest.mark.asvs("V6.2.4")
def test_blocklist_compares_case_insensitively_including_unicode_case():
    blocklist = Blocklist.from_lines(
        ["straße-passwort-123\n", "ÉTÉ-ÉTÉ-ÉTÉ-ÉTÉ\r\n", "", "#1hashtagpassword"]
    )
    assert len(blocklist) == 3
    assert "STRASSE-PASSWORT-123" in blocklist  # casefold, not lower
    assert "été-été-été-été" in blocklist
    assert (
        "#1HashtagPassword" in blocklist
    )  # lines starting with '#' are passwords, not comments
    assert "straße-passwort-12" not in blocklist


@pytest.mark.asvs("V6.2.4")
def test_blocklist_matches_decomposed_forms_of_listed_passwords():
    blocklist = Blocklist.from_lines(["café-au-lait-chaud"])
    assert unicodedata.normalize("NFD", "CAFÉ-AU-LAIT-CHAUD") in blocklist


@pytest.mark.asvs("V6.2.4")
@pytest.mark.parametrize(
    "password",
    [
        "passwordpassword",
        "PasswordPassword",
        "passwordpasswordpassword",
        "passwordpasswor",  # repeated just far enough to reach 15
        "123456123456123456",
        "qwertyqwertyqwerty",
        "iloveyouiloveyou",
        "dragondragondragon",
        "monkeymonkeymonkey",
    ],
)
def test_blocklisted_word_repeated_to_reach_the_length_is_rejected(password):
    assert problems(password) == ["Password repeats a common password; choose another."]


# --- trivially generated strings (V6.2.4: "expected" passwords) --------------------------------


@pytest.mark.asvs("V6.2.4")
@pytest.mark.parametrize(
    "password", ["a" * 15, "A" * 64, "1" * 20, " " * 16, "🔒" * 15, "é" * 30]
)
def test_single_character_repeated_is_rejected(password):
    assert problems(password) == [
        "Password is a single character repeated; choose another."
    ]


@pytest.mark.asvs("V6.2.4")
@pytest.mark.parametrize("password", ["ab" * 8, "x1!" * 5, "Ab" * 10 + "A", "12" * 9])
def test_short_unit_repeated_is_rejected(password):
    assert problems(password) == ["Password repeats a short pattern; choose another."]


@pytest.mark.asvs("V6.2.4")
@pytest.mark.parametrize(
    "password",
    [
        "abcdefghijklmnop",
        "ABCDEFGHIJKLMNOPQ",
        "zyxwvutsrqponmlkj",
        "123456789012345",
        "987654321098765",
        "0246802468024680",
        "qwertyuiopqwertyuiop",
        "poiuytrewqpoiuytrewq",
        "qwertyuiopasdfghjkl",
        "asdfghjklasdfghjkl",
        "zxcvbnmzxcvbnmzxcvbnm",
        "1qaz2wsx3edc4rfv5tgb",
        "abcdefghijklmnopqrstuvwxyzab",
    ],
)
def test_sequences_and_keyboard_walks_are_rejected(password):
    found = problems(password)
    assert len(found) == 1
    assert (
        "sequence or keyboard pattern" in found[0]
        or "repeats a common password" in found[0]
    )


@pytest.mark.asvs("V6.2.4")
def test_repeated_keyboard_walk_not_on_the_list_is_rejected():
    assert "fghjk" not in BLOCKLIST
    assert problems("fghjkfghjkfghjk") == [
        "Password repeats a simple sequence or keyboard pattern; choose another."
    ]


# --- username and context words (V6.2.11, V6.1.2) ----------------------------------------------


@pytest.mark.asvs("V6.2.11")
@pytest.mark.parametrize(
    "password", ["alexander.hamilton", "ALEXANDER.HAMILTON", "Alexander.Hamilton"]
)
def test_password_equal_to_the_username_is_rejected_in_any_case(password):
    assert problems(password, username="alexander.hamilton") == [
        "Password must not be the username."
    ]


@pytest.mark.asvs("V6.2.11")
@pytest.mark.parametrize(
    "password",
    ["my name is Alice and I sing", "ALICE-glimmerquartz", "glimmerquartz-alice"],
)
def test_password_containing_the_username_is_rejected(password):
    assert problems(password, username="alice") == [
        "Password must not contain the username."
    ]


@pytest.mark.asvs("V6.2.11")
def test_short_usernames_are_only_matched_whole():
    # Banning every password that contains "al" would be a composition rule in disguise.
    assert accepted("glimmer al quartz pond", username="al")
    assert "Password must not be the username." in problems("Al", username="al")


@pytest.mark.asvs("V6.2.11", "V6.1.2")
@pytest.mark.parametrize(
    "password", ["authsvc-is-great-2025", "MyAUTHSVCpassword", "glimmer AuthSvc pond"]
)
def test_service_name_is_rejected_in_any_case(password):
    assert problems(password) == ["Password must not contain 'authsvc'."]


@pytest.mark.asvs("V6.2.11", "V6.1.2")
def test_configured_context_words_are_rejected():
    rules = PasswordRules(context_words=("authsvc", "Example Corp", "intranet"))
    assert problems("example corp glimmer pond", rules=rules) == [
        "Password must not contain 'Example Corp'."
    ]
    assert problems("my INTRANET login 42", rules=rules) == [
        "Password must not contain 'intranet'."
    ]


@pytest.mark.asvs("V6.1.2")
@pytest.mark.parametrize("words", [("",), ("authsvc", "  ")])
def test_rules_refuse_empty_context_words_that_would_ban_everything(words):
    with pytest.raises(ValueError, match="context_words"):
        PasswordRules(context_words=words)


@pytest.mark.asvs("V6.2.11")
def test_messages_never_quote_the_password_or_username():
    username = "victor.username"
    for password in [
        "victor.username",
        "xx victor.username xx",
        "passwordpassword",
        "zq",
    ]:
        for message in problems(password, username=username):
            assert password not in message
            assert username not in message


# --- Unicode: NFC, code points, no truncation (V6.2.8) -----------------------------------------


@pytest.mark.asvs("V6.2.8")
def test_composed_and_decomposed_e_acute_normalize_equal():
    composed, decomposed = "\u00e9", "e\u0301"
    assert composed != decomposed
    assert normalize_password(composed) == normalize_password(decomposed) == composed


@pytest.mark.asvs("V6.2.8")
def test_nfc_makes_a_decomposed_password_and_its_composed_twin_the_same_secret():
    typed_on_mac = unicodedata.normalize("NFD", "crème brûlée à la façon")
    typed_on_windows = unicodedata.normalize("NFC", "crème brûlée à la façon")
    assert typed_on_mac != typed_on_windows
    assert normalize_password(typed_on_mac) == normalize_password(typed_on_windows)


@pytest.mark.asvs("V6.2.8")
def test_normalize_uses_nfc_not_nfkc():
    # NIST rev. 4 says NFC; NFKC would fold "ﬁ" into "fi" and "①" into "1", changing the secret.
    assert normalize_password("ﬁ①") == "ﬁ①"


@pytest.mark.asvs("V6.2.8")
@pytest.mark.parametrize(
    "password", ["  spaced  ", "MiXeD CaSe", "tab\there", "trailing newline\n"]
)
def test_normalize_does_not_strip_or_change_case(password):
    assert normalize_password(password) == password


@pytest.mark.asvs("V6.2.8")
def test_normalize_does_not_truncate():
    long = FILLER[:1000] + "é" * 100 + "z"
    assert normalize_password(long) == long
    assert len(normalize_password("x" * 5000)) == 5000


@pytest.mark.asvs("V6.2.8")
def test_length_counts_code_points_after_nfc():
    decomposed = (
        unicodedata.normalize("NFD", "éèêëàâäôöûü") + "glim"
    )  # 26 code points before NFC
    assert len(decomposed) == 26
    assert accepted(decomposed)
    assert problems(decomposed[:-2]) == [
        "Password is 13 characters; the minimum is 15."
    ]


@pytest.mark.asvs("V6.2.8")
def test_emoji_heavy_password_length_is_counted_in_code_points():
    emoji = "🍎🍌🍒🍇🍉🍓🍑🍍🥝🥥🥑🍆🥕🌽"  # 14 emoji, 14 code points, 56 UTF-8 bytes
    assert len(emoji.encode("utf-8")) == 56
    assert problems(emoji) == ["Password is 14 characters; the minimum is 15."]
    assert accepted(emoji + "🌶")
    # A skin-tone emoji is two code points: one visible symbol, two characters.
    thumbs = "👍🏽"
    assert problems("🍎🍌🍒🍇🍉🍓🍑🍍🥝🥥🥑🍆🥕" + thumbs) == []


@pytest.mark.asvs("V6.2.8")
def test_unpaired_surrogates_are_rejected_with_a_reason_not_an_exception():
    assert problems("glimmerquartz\ud800pond") == [
        "Password contains invalid characters (unpaired surrogate code points); type it again."
    ]
