#!/usr/bin/env python3
"""Golden token ids for FlashCore's tokenizer tests, from Hugging Face `tokenizers` (the reference).

Subcommands (run from the repo root):
  corpus  --out tests/data/tokenizer/corpus.json
          Writes the test strings (no dependencies). The corpus is committed; rerun only to change it.
  mini    --llama3 .cache/llama3_1/tokenizer.json --out-dir tests/data/tokenizer
          Writes two small tokenizer.json files cut from LLaMA 3's vocabulary (no dependencies) that
          exercise what LLaMA 3 does not: added-token flags (lstrip, rstrip, single_word, normalized,
          non-special), GPT-2 ByteLevel (add_prefix_space, use_regex), every Split behaviour, invert,
          merges written as "a b", a post-processor with a suffix, BPE without ignore_merges.
  golden  --tokenizer FILE --corpus tests/data/tokenizer/corpus.json --out FILE [--max-chars N]
          Encodes every corpus string with `tokenizers` (from tokenizers import Tokenizer): ids without
          and with special tokens added, and with special-token text kept as plain text
          (encode_special_tokens); decodes seeded random id lists. Needs `tokenizers` (GPU machine).
  chat    --model-dir .cache/llama3_1 --out tests/data/tokenizer/llama3_1.chat.golden.json
          Renders chat_cases() with transformers' apply_chat_template and encodes the text (what
          transformers does for tokenize=True). Needs `transformers` (GPU machine).
"""
import argparse
import json
import random
import sys


def corpus_strings():
    s = []
    # Contractions in every case; the pattern's (?i:'s|'t|...) is case-insensitive, and Unicode
    # case folding also maps U+017F (long s) and U+212A (Kelvin) to s and k.
    s += ["I'm", "you're", "he's", "she'd", "we've", "they'll", "it's", "don't", "can't", "won't",
          "I'M", "YOU'RE", "HE'S", "SHE'D", "WE'VE", "THEY'LL", "IT'S", "DON'T", "He'S", "We'Re", "they'Ll",
          "y'all", "'s", "''s", "'S'T'RE", "rock'n'roll", "o'clock", "he'\u017f", "I\u2019m curly", "l'amour",
          "'", "''", "'''", "' s", "'ss", "'ve'", "Let's go! It's 5 o'clock; we'd've known."]
    # Digit runs (split by 1-3), other numerals.
    s += ["1", "12", "123", "1234", "12345", "123456", "1234567", "12345678901234567890", "3.14159",
          "1,000,000.00", "-42", "+7e10", "0x1F", "v1.2.3", "2024-07-26", "10:45pm", "x2y33z444w5555",
          "\u0663\u0664\u0665 arabic-indic", "\uff11\uff12\uff13\uff14 fullwidth", "x\u00b2+y\u00b3", "\u216b \u2167",
          "\u00bd \u00be", "\u0967\u0968\u0969 devanagari", "9" * 100]
    # Whitespace runs, CR/LF, tabs.
    s += [" ", "  ", "   ", "a b", "a  b", "a   b", "a    b", "   leading", "trailing   ", " both ",
          "\n", "\n\n", "\n\n\n", "\r\n", "\r\n\r\n", "\r", "line1\nline2", "line1\r\nline2\r\n", "a\rb",
          "text\n", "\ntext", "word \n", " \r\n ", "  \n  \n  ", "\t", "\t\t", "\tindented", "a\tb\tc",
          "a \t b", "\t \n", "x\n\n\ny", "end.\n\n", " " * 100, "\n" * 50, " \n" * 20, "a" + " " * 30 + "b",
          "  \t\r\n\u000b\u000c  ", "para one.\n\npara two.\n", "    def f():\n        return 1\n"]
    # Unusual spaces: NEL, NBSP, line/paragraph separators, Mongolian vowel separator (not
    # White_Space since Unicode 6.3), zero-width space, ideographic space, BOM.
    s += ["a\u0085b", "a\u00a0b", "a\u2028b", "a\u2029b", "a\u180eb", "a\u200bb", "a\u3000b", "\ufeffbom",
          "x \u00a0 y", "\u2003em\u2003space", "\u0085\u0085", "q\u00a0\u00a0\n",
          # Where PCRE2's own \s (which takes U+180E) and Oniguruma's (White_Space) would cut differently.
          "a \u180eb", "x\u180e\u180ey z", " \u180e\u180e", "\u180e hello", "go \u180e\u180eon", "a \u0085b",
          "\u0085\u0085x", "a \r\n\tb", "  \r\r\n  x", " \u0301x", "a\u200db", "\u2009thin\u2009"]
    # Letters and marks.
    s += ["caf\u00e9", "cafe\u0301", "na\u00efve r\u00e9sum\u00e9", "\u00dcn\u00efc\u00f6d\u00e9",
          "Za\u017c\u00f3\u0142\u0107 g\u0119\u015bl\u0105 ja\u017a\u0144", "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
          "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5", "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
          "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645", "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
          "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", "Ti\u1ebfng Vi\u1ec7t c\u00f3 d\u1ea5u",
          "a\u0300\u0301\u0302\u0303\u0304", "\u0301leading mark", "Stra\u00dfe STRASSE", "\u0130stanbul \u0131\u0131",
          "\u01c5 \u01c6 titlecase", "e\u0308\u0323", "\u1100\u1161\u11a8 jamo", "abc123def", "x\u00b22",
          "\u2019s \u2019S it\u2019s", "\u02bc\u02c6 modifier letters", "\u3007\u3021 ideographic numbers"]
    # CJK and fullwidth punctuation.
    s += ["\u4f60\u597d\uff0c\u4e16\u754c\uff01", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3001\u30ab\u30bf\u30ab\u30ca\u3002",
          "\u4e2d\u6587\u6807\u70b9\uff1a\u300c\u5f15\u53f7\u300d", "\u6f22\u5b57" * 30, "\u3053\u3093\u306b\u3061\u306f world",
          "\uff21\uff22\uff23 fullwidth latin", "\U00020000\U0002a6d6 ext-b"]
    # Emoji, joiners, modifiers, flags, variation selectors.
    s += ["\U0001f600", "\U0001f600\U0001f600\U0001f600", "a\U0001f600b", "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
          "\U0001f3f3\ufe0f\u200d\U0001f308", "\U0001f44d\U0001f3fd", "\U0001f1fa\U0001f1f8\U0001f1eb\U0001f1f7", "\u2764\ufe0f",
          "I \u2764\ufe0f NY \U0001f5fd!", "\U0001f9d1\u200d\U0001f4bb coding", "\u200d\u200c joiners", "\U0001f600 " * 10]
    # Punctuation and symbols.
    s += ["!!!???", "...", "\u2014\u2013-", "\u201cquoted\u201d", "``", "@#$%^&*()", "a.b,c;d:e", "(x)", "[]{}<>",
          "#include <vector>", "->", "=>", "::", "!=", "<=>", "~~~", "$$$", "\u00a9\u00ae\u2122", "\u00a7 1.2", "%",
          "!\n", "?\r\n", ".\n\n", " ,", " .\n", "x!\n\n y"]
    # Text that looks like special tokens (and real ones: `tokenizers` matches them by default).
    s += ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
          "<|begin_of_text|>hello", "text<|eot_id|>more", " <|eot_id|> ", "<|eot_id|><|eot_id|>", "<<|eot_id|>>",
          "<|eot_id", "|eot_id|>", "<|EOT_ID|>", "< |eot_id|>", "<|eot_id |>", "<|reserved_special_token_0|>",
          "<|reserved_special_token_250|>", "<|reserved_special_token_251|>", "<|python_tag|>", "<|eom_id|>",
          "<|finetune_right_pad_id|>", "<s>", "</s>", "<unk>", "[INST] hi [/INST]", "<<SYS>>\nsys\n<</SYS>>",
          "<|im_start|>", "<|", "|>", "<|>", "<||>", "\n<|eot_id|>\n", "<|start_header_id|>", "<|end_header_id|>\n\n"]
    # Added-token edge cases for the mini tokenizers (lstrip/rstrip/single_word/normalized).
    s += ["<mask>", " <mask> ", "a<mask>b", "a <mask> b", "x  <mask>  y", "<mask><mask>", "hello", "hello world",
          "say hello!", "sayhello", "hello_world", "[SEP]", "a [SEP] b", "a\t[SEP]\tb", "[CLS] x", "[CLS]   x",
          "ab", "abc", "xabcx", "abab", "<|x|>", "a<|x|>b", "\u00fc", "\u00fcber", "a \u00fc b", "\u00fc\u00fc",
          "</s><s>", "--", "a--b--c", "a1b22c333", "x,y;z", ",,", "xXx", "1x2X3", "aQbQQc", "Q", "QQ x Q"]
    # Code and markup.
    s += ['def add(a, b):\n    """Adds."""\n    return a + b\n',
          'for (int i = 0; i < n; ++i) {\n\tsum += v[i];\n}\n',
          '{"key": "value", "n": [1, 2, 3], "nested": {"ok": true}}',
          '<div class="x">Hello &amp; welcome</div>',
          'SELECT * FROM users WHERE id = 42;',
          'https://example.com/path/to/page?query=1&other=two#frag',
          'user@example.com', '$ ls -la /usr/local/bin | grep -v "^d"', '| a | b |\n|---|---|\n| 1 | 2 |',
          '# Title\n\n* item\n* item two\n\n```python\nprint("hi")\n```\n']
    # Prose.
    s += ["Hello, world!", "The quick brown fox jumps over the lazy dog.",
          "In 1969, Apollo 11 landed on the Moon; Neil Armstrong said: \"That's one small step...\"",
          "Mr. O'Neil's dog isn't here, but the dogs' owners aren't worried.",
          "Ce n'est pas grave, c'est la vie ! \u00c7a va ?", "\u00bfD\u00f3nde est\u00e1 la biblioteca? \u00a1Aqu\u00ed!"]
    # Long words and runs.
    rng = random.Random(1234)
    letters = "abcdefghijklmnopqrstuvwxyz"
    s += ["a" * 1000, "supercalifragilisticexpialidocious" * 20, "ab" * 300,
          "".join(rng.choice(letters) for _ in range(600)),
          "".join(rng.choice(letters + letters.upper() + "0123456789+/") for _ in range(800)),
          "".join(rng.choice("0123456789abcdef") for _ in range(512)),
          "\u00e9" * 300, "\u4e00" * 200, "x" * 5000, "-" * 200, "=" * 80 + "\n", ". " * 200]
    # Empty.
    s += [""]
    # A longer mixed document.
    doc = []
    for i in range(40):
        doc.append(rng.choice(s[:200]))
    s.append(" ".join(doc))
    return s


def cmd_corpus(args):
    strings = corpus_strings()
    assert len(set(strings)) == len(strings), "duplicate corpus strings"
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("[\n")
        f.write(",\n".join(json.dumps(x, ensure_ascii=False) for x in strings))
        f.write("\n]\n")
    print(f"wrote {len(strings)} strings to {args.out}")


def cut_vocab(llama3_path, merge_count, string_merges):
    """Byte alphabet plus the first `merge_count` LLaMA 3 merges whose parts are already present."""
    with open(llama3_path, encoding="utf-8") as f:
        big = json.load(f)
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_char = dict(zip(bs, cs))
    vocab = {}
    for b in range(256):
        vocab[chr(byte_char[b])] = b
    merges = []
    for m in big["model"]["merges"]:
        a, b = m.split(" ") if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b not in vocab:
            vocab[a + b] = len(vocab)
            merges.append(f"{a} {b}" if string_merges else [a, b])
            if len(merges) == merge_count:
                break
    return vocab, merges


def added(id_, content, special, normalized=False, lstrip=False, rstrip=False, single_word=False):
    return {"id": id_, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": normalized, "special": special}


def cmd_mini(args):
    # mini_a: GPT-2 style ByteLevel pre-tokenizer, BPE without ignore_merges, added-token flags.
    vocab, merges = cut_vocab(args.llama3, 400, string_merges=False)
    v = len(vocab)
    tokens = [added(v, "<s>", True), added(v + 1, "</s>", True),
              added(v + 2, "<mask>", False, lstrip=True, rstrip=True, single_word=True),
              added(v + 3, "hello", False, normalized=True, single_word=True),
              added(v + 4, "[SEP]", True, lstrip=True),
              added(v + 5, "[CLS]", False, rstrip=True),
              added(v + 6, "ab", False),
              added(v + 7, "abc", False, normalized=True),
              added(v + 8, "<|x|>", True),
              added(v + 9, "\u00fc", False, single_word=True)]
    mini_a = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": tokens, "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [v], "tokens": ["<s>"]},
                                              "</s>": {"id": "</s>", "ids": [v + 1], "tokens": ["</s>"]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    # mini_b: every Split behaviour, invert, a literal pattern, a pattern that can match empty,
    # ignore_merges, merges written as "a b".
    vocab, merges = cut_vocab(args.llama3, 300, string_merges=True)
    v = len(vocab)
    split = lambda pattern, behavior, invert=False: {"type": "Split", "pattern": pattern, "behavior": behavior,
                                                     "invert": invert}
    mini_b = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [added(v, "<eos>", True)],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            split({"String": "--"}, "Removed"),
            split({"Regex": "\\s+"}, "MergedWithPrevious"),
            split({"Regex": "\\p{N}"}, "Contiguous"),
            split({"Regex": "[,;]"}, "MergedWithNext", invert=True),
            split({"Regex": "(?i:x)"}, "Isolated", invert=True),
            split({"Regex": "(?=Q)"}, "Isolated"),
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": merges},
    }
    for name, j in (("mini_a", mini_a), ("mini_b", mini_b)):
        path = f"{args.out_dir}/{name}.tokenizer.json"
        with open(path, "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False, indent=1)
        print(f"wrote {path}")


def cmd_golden(args):
    import tokenizers
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(args.tokenizer)
    with open(args.corpus, encoding="utf-8") as f:
        corpus = json.load(f)
    cases = []
    for text in corpus:
        if args.max_chars and len(text) > args.max_chars:
            continue
        tok.encode_special_tokens = False
        ids = tok.encode(text, add_special_tokens=False).ids
        ids_bos = tok.encode(text, add_special_tokens=True).ids
        tok.encode_special_tokens = True
        ids_plain = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        cases.append({"text": text, "ids": ids, "ids_bos": ids_bos, "ids_plain": ids_plain})
    # Decoding arbitrary id lists, including ones that cut characters: checks the U+FFFD policy.
    rng = random.Random(99)
    vocab_size = max(tok.get_vocab(with_added_tokens=True).values()) + 1
    decode_cases = []
    for i in range(args.decode_cases):
        length = rng.choice([1, 2, 3, 5, 8, 13])
        if i % 2 == 0:  # low ids: mostly single bytes and short pieces, often partial characters
            ids = [rng.randrange(0, min(vocab_size, 400)) for _ in range(length)]
        else:
            ids = [rng.randrange(0, vocab_size) for _ in range(length)]
        decode_cases.append({"ids": ids, "text": tok.decode(ids, skip_special_tokens=False)})
    out = {"tokenizer": args.tokenizer, "tokenizers_version": tokenizers.__version__, "vocab_size": vocab_size,
           "cases": cases, "decode_cases": decode_cases}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"{args.tokenizer}: {len(cases)} cases, {len(decode_cases)} decode cases -> {args.out} "
          f"(tokenizers {tokenizers.__version__})")


def chat_cases():
    """Conversations for the chat-format check (no message text that spells a special token: FlashCore
    deliberately encodes message text as plain text, where the template would parse it)."""
    return [
        {"messages": [{"role": "user", "content": "Hello!"}], "add_generation_prompt": True},
        {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                      {"role": "user", "content": "  What's 2+2?\n"}], "add_generation_prompt": True},
        {"messages": [{"role": "system", "content": "Be terse.\n\n"}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": " Hello. "}, {"role": "user", "content": "caf\u00e9 \U0001f600 \u4f60\u597d"}],
         "add_generation_prompt": True},
        {"messages": [{"role": "user", "content": "Write code:\n```py\nprint(1)\n```"},
                      {"role": "assistant", "content": "Done."}], "add_generation_prompt": False},
        {"messages": [{"role": "user", "content": "\t tabs and\r\nCRLF \u00a0"}], "add_generation_prompt": True},
        {"messages": [{"role": "ipython", "content": "{\"result\": 42}"}], "add_generation_prompt": True},
    ]


def cmd_chat(args):
    import os
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model_dir)
    out = []
    for case in chat_cases():
        text = tok.apply_chat_template(case["messages"], add_generation_prompt=case["add_generation_prompt"],
                                       tokenize=False)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        out.append(dict(case, text=text, ids=ids))
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"model_dir": args.model_dir, "transformers_version": transformers.__version__, "cases": out},
                  f, ensure_ascii=False, indent=1)
    print(f"{args.model_dir}: {len(out)} chat cases -> {args.out} (transformers {transformers.__version__})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("corpus")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_corpus)
    p = sub.add_parser("mini")
    p.add_argument("--llama3", required=True, help="LLaMA 3 tokenizer.json to cut the vocabulary from")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(fn=cmd_mini)
    p = sub.add_parser("golden")
    p.add_argument("--tokenizer", required=True, help="tokenizer.json")
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-chars", type=int, default=0, help="skip longer corpus strings (0: keep all)")
    p.add_argument("--decode-cases", type=int, default=200)
    p.set_defaults(fn=cmd_golden)
    p = sub.add_parser("chat")
    p.add_argument("--model-dir", required=True, help="folder with tokenizer.json + tokenizer_config.json")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_chat)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
