"""Every validation rule: one broken field, the exact FILE:LINE: field: message, exit 2.

Each test edits one thing in genutil.SMALL (whose line numbers are listed there)
and runs `gen/hakgen validate` as a subprocess.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from genutil import SMALL, TempDirTest, edit  # noqa: E402


class SpecErrorTest(TempDirTest):
    def check(self, text, expected, name="spec.yaml"):
        self.write(name, text)
        self.assertSpecError(self.hakgen("validate", name), expected)

    def test_small_spec_is_valid(self):
        self.write("spec.yaml", SMALL)
        self.assertRegex(self.assertOk(self.hakgen("validate", "spec.yaml")),
                         r"^spec\.yaml: ok: small [0-9a-f]{16}\n$")

    # ---- the file and its YAML
    def test_malformed_yaml(self):
        self.check(edit(SMALL, "  ring: 16\n", "  ring: 16: 17\n"),
                   "spec.yaml:16: (yaml): malformed YAML: mapping values are not allowed here")

    def test_malformed_yaml_unclosed_bracket_names_its_line(self):
        self.check(edit(SMALL, "[384, 512, 1024, 2048]", "[384, 512, 1024, 2048"),
                   "spec.yaml:19: (yaml): malformed YAML: expected ',' or ']', but got ':'"
                   " (while parsing a flow sequence at line 18)")
        self.check(SMALL + "extra: [1, 2\n\n\n",
                   "spec.yaml:25: (yaml): malformed YAML: expected ',' or ']', but got '<stream end>'"
                   " (while parsing a flow sequence)")

    def test_malformed_yaml_at_end_of_file(self):
        self.check("schema: 1\nname: [\n\n",
                   "spec.yaml:2: (yaml): malformed YAML: expected the node content, but found "
                   "'<stream end>' (while parsing a flow node)")

    def test_two_documents(self):
        self.check(SMALL + "---\nschema: 1\n",
                   "spec.yaml:25: (yaml): malformed YAML: but found another document "
                   "(expected a single document in the stream at line 1)")

    def test_empty_file(self):
        self.check("", "spec.yaml:1: (file): empty spec")

    def test_comments_only(self):
        self.check("# nothing here\n\n", "spec.yaml:1: (file): empty spec")

    def test_missing_file(self):
        self.assertSpecError(self.hakgen("validate", "nope.yaml"), "nope.yaml:0: (file): no such file")

    def test_not_a_mapping(self):
        self.check("- 16\n- 32\n", "spec.yaml:1: (spec): expected a mapping, got a list")

    def test_repeated_yaml_key(self):
        self.check(edit(SMALL, "name: small\n", "name: small\nname: other\n"),
                   "spec.yaml:3: name: repeated key (first at line 2)")

    def test_lines_counted_by_newlines_only(self):
        # PyYAML counts U+2028, U+2029 and U+0085 as line breaks too: every line after a
        # quoted value holding them was named past where it is
        self.check(edit(SMALL, "name: small\n",
                        'name: small\nextra: "a\u2028b\u2029c\u0085d"\nname: other\n'),
                   "spec.yaml:4: name: repeated key (first at line 2)")
        self.check(edit(SMALL, "name: small\n", 'name: "a\u2028b"\n[\n'),
                   "spec.yaml:4: (yaml): malformed YAML: could not find expected ':' (while "
                   "scanning a simple key at line 3)")

    def test_timestamp_and_binary_keys(self):
        # a key tagged !!timestamp that is none raised AttributeError (a traceback); such
        # keys are their text, as such values are
        for key in ("!!timestamp abc", "2001-12-14", "!!binary aGk="):
            with self.subTest(key=key):
                self.check(edit(SMALL, "name: small\n", f"name: small\n{key}: 1\n"),
                           f"spec.yaml:3: {key.split()[-1]}: unknown key (known: base, large, "
                           "mid, name, options, schema, superslab, tiny)")

    def test_repeated_block_key_names_both_key_lines(self):
        self.check(SMALL + "options:\n  metrics: true\n",
                   "spec.yaml:25: options: repeated key (first at line 21)")

    def test_block_list_for_int_names_the_key_line(self):
        self.check(edit(SMALL, "  ring: 16\n", "  ring:\n    - 16\n"),
                   "spec.yaml:16: mid.ring: expected an integer, got a list")

    def test_recursive_alias(self):
        self.check(SMALL + "extra: &loop [1, *loop]\n",
                   "spec.yaml:25: (yaml): an alias refers to a node that contains it")

    def test_bad_explicit_tag(self):
        self.check(edit(SMALL, "decay_ms: 1000", 'decay_ms: !!int "soon"'),
                   "spec.yaml:24: (yaml): 'soon' is not a valid int")

    def test_empty_or_odd_explicit_tags(self):
        self.check(edit(SMALL, "decay_ms: 1000", 'decay_ms: !!int ""'),
                   "spec.yaml:24: (yaml): '' is not a valid int")
        self.check(edit(SMALL, "decay_ms: 1000", 'decay_ms: !!int "-"'),
                   "spec.yaml:24: (yaml): '-' is not a valid int")
        self.check(edit(SMALL, "decay_ms: 1000", 'decay_ms: !!float ""'),
                   "spec.yaml:24: (yaml): '' is not a valid float")

    def test_integers_are_decimal(self):
        # YAML 1.1 reads these as numbers no one writing a spec means
        for text, value in (("010", "8"), ("1:00", "60"), ("0x10", "16"), ("0b11", "3"),
                            ("1_000", "1000")):
            with self.subTest(text):
                self.check(edit(SMALL, "  ring: 16\n", f"  ring: {text}\n"),
                           f"spec.yaml:16: (yaml): '{text}' is not a decimal integer "
                           f"(YAML 1.1 reads it as '{value}')")

    def test_huge_numbers(self):
        self.check(edit(SMALL, "cache_bytes: 64MiB", "cache_bytes: " + "9" * 5000),
                   "spec.yaml:20: (yaml): '" + "9" * 37 + "'... is not a valid int")
        self.check(edit(SMALL, "cache_bytes: 64MiB", 'cache_bytes: "' + "9" * 5000 + 'MiB"'),
                   "spec.yaml:20: large.cache_bytes: " + "9" * 30 + "... is out of range "
                   "0..1099511627776")

    def test_nested_too_deeply(self):
        self.check("a: " + "[" * 3000 + "\n", "spec.yaml:0: (yaml): malformed YAML: nested too deeply")
        deep = "a:\n" + "".join("  " * (i + 1) + "b:\n" for i in range(700)) + "  " * 701 + "1\n"
        self.check(deep, "spec.yaml:0: (yaml): malformed YAML: nested too deeply")

    def test_aliases_expanding_to_millions(self):
        lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
        for i in range(1, 9):
            prev, name = chr(96 + i), chr(97 + i)
            lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
        # named where the bound is passed: expanding line 5's aliases (e: 111,111 values)
        self.check("\n".join(lines) + "\n",
                   "spec.yaml:5: (yaml): more than 100000 values once aliases are expanded")

    def test_alias_error_names_where_it_is_used(self):
        # the anchor is on line 9, the alias that makes the error on line 17
        text = edit(SMALL, "{ size: 16, ring: 128,", "{ size: 16, ring: &n 128,")
        self.check(edit(text, "  refill: 8\n", "  refill: *n\n"),
                   "spec.yaml:17: mid.refill: 128 is out of range 1..16 (the ring capacity)")

    def test_alias_as_list_item_names_where_it_is_used(self):
        # the composer hands out the anchor's node, with the anchor's line: a list item
        # (or a value inside one) named the anchor, a valid field, not the alias
        text = edit(SMALL, "  ring: 16\n", "  ring: &n 16\n")
        self.check(edit(text, "[384, 512, 1024, 2048]", "[384, 512, 1024, 2048, *n]"),
                   "spec.yaml:18: mid.classes[4]: size 16 is not larger than the class before "
                   "it (2048)")
        text = edit(SMALL, "    - { size: 16,", "    - &c { size: 16,")
        self.check(edit(text, "tiers: [sll, slab] }\n", "tiers: [sll, slab] }\n    - *c\n"),
                   "spec.yaml:14: tiny.classes[5].size: size 16 is not larger than the class "
                   "before it (256)")

    def test_collection_alias_as_value_names_where_it_is_used(self):
        # min(anchor's line, key's line) kept the anchor's for a list or a mapping
        text = edit(SMALL, "  tiers: [ring, sll, slab]\n", "  tiers: &t [ring, sll, slab]\n")
        self.check(edit(text, "classes: [384, 512, 1024, 2048]", "classes: *t"),
                   "spec.yaml:18: mid.classes[0]: expected an integer, got 'ring'")

    def test_stem_that_is_no_name(self):
        self.write("base.yaml", SMALL)
        self.check("base: base.yaml\n", "my variant.yaml:1: name: the file's name gives the name "
                   "'my variant', not one of letters, digits, '_', '-', '.': set name: in it",
                   name="my variant.yaml")

    def test_only_a_document_marker(self):
        self.check("---\n", "spec.yaml:1: (file): empty spec")

    def test_class_above_the_largest_size(self):
        self.check(edit(SMALL, "  bytes: 2MiB\n", "  bytes: 16MiB\n").replace(
            "[384, 512, 1024, 2048]", "[384, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, "
            "131072, 262144, 524288, 1048576, 2097152]"),
            "spec.yaml:18: mid.classes[13]: size 2097152 is above 1048576, the largest class "
            "size (larger requests are large allocations)")

    def test_overlays_too_deep(self):
        self.write("s0.yaml", SMALL)
        for i in range(1, 70):
            self.write(f"s{i}.yaml", f"base: s{i - 1}.yaml\n")
        self.assertSpecError(self.hakgen("validate", "s69.yaml"),
                             "s6.yaml:1: base: more than 64 overlays on top of each other")
        self.assertOk(self.hakgen("validate", "s60.yaml"))

    def test_merge_key(self):
        self.check(edit(SMALL, "options:\n", "options:\n  <<: {metrics: true}\n"),
                   "spec.yaml:22: <<: YAML merge keys are not supported")

    def test_nul_character(self):
        self.check(edit(SMALL, "name: small", "name: sm\0all"),
                   "spec.yaml:2: (yaml): malformed YAML: character #x0000: "
                   "special characters are not allowed")

    # ---- pass 1: shape
    def test_unknown_key_top_level(self):
        self.check(SMALL + "colour: blue\n",
                   "spec.yaml:25: colour: unknown key "
                   "(known: base, large, mid, name, options, schema, superslab, tiny)")

    def test_unknown_key_in_class(self):
        self.check(edit(SMALL, "{ size: 64, ring: 128", "{ size: 64, rign: 128"),
                   "spec.yaml:11: tiny.classes[2].rign: unknown key "
                   "(known: prewarm, refill, ring, size, sll, tiers, transfer)")

    def test_unknown_key_in_options(self):
        self.check(edit(SMALL, "  metrics: false\n", "  metrics: false\n  verbose: true\n"),
                   "spec.yaml:23: options.verbose: unknown key (known: decay_ms, dispatch, free_check, metrics, "
                   "stride_pad, tls)")

    def test_string_for_int(self):
        self.check(edit(SMALL, "{ size: 64, ring: 128", '{ size: 64, ring: "128"'),
                   "spec.yaml:11: tiny.classes[2].ring: expected an integer, got '128'")

    def test_int_for_bool(self):
        self.check(edit(SMALL, "metrics: false", "metrics: 1"),
                   "spec.yaml:22: options.metrics: expected true or false, got 1")
        self.check(edit(SMALL, "  decay_ms: 1000\n", "  decay_ms: 1000\n  stride_pad: 16\n"),
                   "spec.yaml:25: options.stride_pad: expected true or false, got 16")

    def test_list_for_mapping(self):
        self.check(edit(SMALL, "large:\n  cache_bytes: 64MiB\n", "large: [64MiB]\n"),
                   "spec.yaml:19: large: expected a mapping, got a list")

    def test_bad_byte_size(self):
        self.check(edit(SMALL, "slab_bytes: 64KiB", "slab_bytes: 64 KB"),
                   "spec.yaml:5: superslab.slab_bytes: expected a byte size such as 65536 or 64KiB, "
                   "got '64 KB'")
        self.check(edit(SMALL, "  refill: 8\n", "  refill: 8\n  class_cache_bytes: 2 MB\n"),
                   "spec.yaml:18: mid.class_cache_bytes: expected a byte size such as 65536 or "
                   "64KiB, got '2 MB'")
        self.check(edit(SMALL, "  refill: 8\n", "  refill: 8\n  class_cache_bytes: -1\n"),
                   "spec.yaml:18: mid.class_cache_bytes: -1 is out of range 0..1099511627776")

    def test_bad_enum(self):
        self.check(edit(SMALL, "free_check: guarded", "free_check: paranoid"),
                   "spec.yaml:23: options.free_check: expected one of guarded, trusted, got 'paranoid'")

    def test_bad_name(self):
        self.check(edit(SMALL, "name: small", "name: two words"),
                   "spec.yaml:2: name: expected a name of letters, digits, '_', '-', '.', "
                   "got 'two words'")

    def test_missing_required_field(self):
        self.check(edit(SMALL, "  decay_ms: 1000\n", ""),
                   "spec.yaml:21: options.decay_ms: missing required field")

    def test_missing_required_top_level_field(self):
        self.check(edit(SMALL, "name: small\n", ""), "spec.yaml:1: name: missing required field")

    def test_class_without_size(self):
        self.check(edit(SMALL, "{ size: 64, ring: 128", "{ ring: 128"),
                   "spec.yaml:11: tiny.classes[2].size: missing required field")

    def test_schema_2(self):
        self.check(edit(SMALL, "schema: 1", "schema: 2"),
                   "spec.yaml:1: schema: schema 2 is not supported (this generator reads schema 1)")

    def test_out_of_schema_range(self):
        self.check(edit(SMALL, "{ size: 64, ring: 128, sll: 256", "{ size: 64, ring: 128, sll: 2000000"),
                   "spec.yaml:11: tiny.classes[2].sll: 2000000 is out of range 0..1048576")

    def test_negative_prewarm(self):
        self.check(edit(SMALL, "refill: 64 }", "refill: 64, prewarm: -1 }", count=3),
                   "spec.yaml:9: tiny.classes[0].prewarm: -1 is out of range 0..1048576")

    def test_prewarm_bytes_bounded(self):
        # within every class's capacity, yet every thread would start by caching 17 MB (a
        # 1 MiB class's 64 Ki blocks: 64 GiB); up to 16 MiB in all is kept
        big = "{ size: 256, ring: 4096, sll: 65536, refill: 16, prewarm: %d }"
        line = "{ size: 256, ring: 32, sll: 64, refill: 16, tiers: [sll, slab] }"
        self.check(edit(SMALL, line, big % 69632),
                   "spec.yaml:13: tiny.classes[4].prewarm: 69632 blocks of 256 B make 17825792 "
                   "bytes cached at every thread's start, over 16777216 (16 MiB)")
        self.write("ok.yaml", edit(SMALL, line, big % 65536))
        self.assertOk(self.hakgen("validate", "ok.yaml"))

    # ---- tiers
    def test_unknown_tier(self):
        self.check(edit(SMALL, "tiers: [sll, slab]", "tiers: [heap, slab]"),
                   "spec.yaml:13: tiny.classes[4].tiers: unknown tier 'heap' (known: ring, sll, slab)")

    def test_repeated_tier(self):
        self.check(edit(SMALL, "  tiers: [ring, sll, slab]", "  tiers: [ring, ring, slab]"),
                   "spec.yaml:7: tiny.tiers: tier 'ring' is repeated")

    def test_slab_not_last(self):
        self.check(edit(SMALL, "tiers: [sll, slab]", "tiers: [slab, sll]"),
                   "spec.yaml:13: tiny.classes[4].tiers: the last tier must be 'slab' "
                   "(the runtime behind the caches)")

    def test_no_slab_tier(self):
        self.check(edit(SMALL, "  tiers: [ring, slab]", "  tiers: [ring]"),
                   "spec.yaml:15: mid.tiers: the last tier must be 'slab' (the runtime behind the caches)")

    def test_empty_tier_list(self):
        self.check(edit(SMALL, "  tiers: [ring, sll, slab]", "  tiers: []"),
                   "spec.yaml:7: tiny.tiers: expected a non-empty list of tiers from ring, sll, slab")

    @staticmethod
    def mid_lists_first(sll):
        """SMALL with the mid classes starting with a list of `sll` blocks (line 17)."""
        return edit(SMALL, "  tiers: [ring, slab]\n  ring: 16\n",
                    f"  tiers: [sll, ring, slab]\n  ring: 16\n  sll: {sll}\n")

    def test_mid_sll_out_of_range(self):
        self.check(self.mid_lists_first(70000),
                   "spec.yaml:17: mid.sll: 70000 is out of range 1..65536")

    def test_mid_refill_larger_than_first_tier_sll(self):
        self.check(self.mid_lists_first(4),
                   "spec.yaml:18: mid.refill: 8 is out of range 1..4 (the sll capacity)")

    # ---- pass 2: sizes
    def test_sizes_unsorted(self):
        self.check(edit(SMALL, "size: 32,", "size: 96,"),
                   "spec.yaml:11: tiny.classes[2].size: size 64 is not larger than the class "
                   "before it (96)")

    def test_size_not_multiple_of_16(self):
        self.check(edit(SMALL, "size: 32,", "size: 24,"),
                   "spec.yaml:10: tiny.classes[1].size: size 24 is not a multiple of 16")

    def test_repeated_size(self):
        self.check(edit(SMALL, "size: 32,", "size: 16,"),
                   "spec.yaml:10: tiny.classes[1].size: size 16 repeats the class before it")

    def test_class_does_not_fit_slab(self):
        self.check(edit(SMALL, "slab_bytes: 64KiB", "slab_bytes: 4KiB").replace(
                       "size: 256,", "size: 8192,"),
                   "spec.yaml:13: tiny.classes[4].size: size 8192 does not fit a 4096-byte slab")

    def test_no_tiny_class(self):
        text = SMALL.split("  classes:\n")[0] + "  classes: []\n" + "mid:" + SMALL.split("mid:")[1]
        self.check(text, "spec.yaml:8: tiny.classes: at least one tiny class is needed")

    # ---- pass 2: caches
    def test_ring_too_large(self):
        self.check(edit(SMALL, "{ size: 64, ring: 128", "{ size: 64, ring: 5000"),
                   "spec.yaml:11: tiny.classes[2].ring: 5000 is out of range 1..4096")

    def test_ring_zero(self):
        self.check(edit(SMALL, "{ size: 64, ring: 128", "{ size: 64, ring: 0"),
                   "spec.yaml:11: tiny.classes[2].ring: 0 is out of range 1..4096")

    def test_sll_too_large(self):
        self.check(edit(SMALL, "{ size: 64, ring: 128, sll: 256", "{ size: 64, ring: 128, sll: 70000"),
                   "spec.yaml:11: tiny.classes[2].sll: 70000 is out of range 1..65536")

    def test_refill_zero(self):
        self.check(edit(SMALL, "{ size: 128, ring: 64, sll: 128, refill: 32 }",
                        "{ size: 128, ring: 64, sll: 128, refill: 0 }"),
                   "spec.yaml:12: tiny.classes[3].refill: 0 is out of range 1..64 (the ring capacity)")

    def test_refill_larger_than_first_tier(self):
        self.check(edit(SMALL, "{ size: 128, ring: 64, sll: 128, refill: 32 }",
                        "{ size: 128, ring: 64, sll: 128, refill: 100 }"),
                   "spec.yaml:12: tiny.classes[3].refill: 100 is out of range 1..64 (the ring capacity)")

    def test_refill_larger_than_first_tier_sll(self):
        self.check(edit(SMALL, "sll: 64, refill: 16", "sll: 64, refill: 65"),
                   "spec.yaml:13: tiny.classes[4].refill: 65 is out of range 1..64 (the sll capacity)")

    def test_default_refill_larger_than_ring(self):
        # the class sets no refill: the default (32) is too large; the error names the class
        self.check(edit(SMALL, "{ size: 128, ring: 64, sll: 128, refill: 32 }",
                        "{ size: 128, ring: 16, sll: 128 }"),
                   "spec.yaml:12: tiny.classes[3].refill: 32 is out of range 1..16 (the ring capacity)")

    def test_prewarm_larger_than_caches(self):
        self.check(edit(SMALL, "{ size: 128, ring: 64, sll: 128, refill: 32 }",
                        "{ size: 128, ring: 64, sll: 128, refill: 32, prewarm: 193 }"),
                   "spec.yaml:12: tiny.classes[3].prewarm: 193 exceeds the class's cache capacity 192")

    def test_mid_ring_out_of_range(self):
        self.check(edit(SMALL, "  ring: 16\n", "  ring: 4097\n"),
                   "spec.yaml:16: mid.ring: 4097 is out of range 1..4096")

    def test_mid_refill_larger_than_ring(self):
        self.check(edit(SMALL, "  refill: 8\n", "  refill: 17\n"),
                   "spec.yaml:17: mid.refill: 17 is out of range 1..16 (the ring capacity)")

    # ---- pass 2: superslab
    def test_superslab_not_power_of_two(self):
        self.check(edit(SMALL, "bytes: 2MiB", "bytes: 3MiB"),
                   "spec.yaml:4: superslab.bytes: 3145728 is not a power of two")

    def test_slab_not_power_of_two(self):
        self.check(edit(SMALL, "slab_bytes: 64KiB", "slab_bytes: 48KiB"),
                   "spec.yaml:5: superslab.slab_bytes: 49152 is not a power of two")

    def test_too_few_slabs(self):
        self.check(edit(SMALL, "slab_bytes: 64KiB", "slab_bytes: 512KiB"),
                   "spec.yaml:5: superslab.slab_bytes: 524288 leaves fewer than 8 slabs in a "
                   "2097152-byte superslab")

    def test_too_many_slabs(self):
        self.check(edit(SMALL, "slab_bytes: 64KiB", "slab_bytes: 2KiB"),
                   "spec.yaml:5: superslab.slab_bytes: 2048 is out of range 4096..268435456")
        self.check(edit(SMALL, "bytes: 2MiB", "bytes: 64MiB"),
                   "spec.yaml:5: superslab.slab_bytes: 1024 slabs per superslab; at most 512")

    def test_span_with_too_many_blocks(self):
        # 128 KiB slabs hold 8192 blocks of 16 B: more than one summary word covers
        self.check(edit(SMALL, "slab_bytes: 64KiB", "slab_bytes: 128KiB"),
                   "spec.yaml:9: tiny.classes[0].size: size 16 puts 8192 blocks in a 131072-byte "
                   "span; at most 4096 (a larger size, or a smaller superslab.slab_bytes)")
        # the same slab with 32 B as the smallest class is within the limit
        self.write("spec.yaml", edit(edit(SMALL, "slab_bytes: 64KiB", "slab_bytes: 128KiB"),
                                     "    - { size: 16, ring: 128, sll: 256, refill: 64 }\n", ""))
        self.assertOk(self.hakgen("validate", "spec.yaml"))

    def test_huge_pages_need_whole_huge_pages(self):
        self.check(edit(SMALL, "  bytes: 2MiB\n  slab_bytes: 64KiB\n",
                        "  bytes: 1MiB\n  slab_bytes: 64KiB\n  huge_pages: true\n"),
                   "spec.yaml:6: superslab.huge_pages: needs superslabs of whole huge pages "
                   "(2097152 bytes); superslab.bytes is 1048576")
        self.check(edit(SMALL, "  slab_bytes: 64KiB\n", "  slab_bytes: 64KiB\n  huge_pages: 1\n"),
                   "spec.yaml:6: superslab.huge_pages: expected true or false, got 1")

    # ---- pass 2: mid
    def test_mid_equal_to_last_tiny(self):
        self.check(edit(SMALL, "[384, 512,", "[256, 512,"),
                   "spec.yaml:18: mid.classes[0]: size 256 repeats the last tiny class")

    def test_mid_overlaps_tiny(self):
        self.check(edit(SMALL, "[384, 512,", "[240, 512,"),
                   "spec.yaml:18: mid.classes[0]: size 240 is not larger than the last tiny class (256)")

    def test_gap_between_tiny_and_mid(self):
        self.check(edit(SMALL, "[384, 512,", "[528, 768,"),
                   "spec.yaml:18: mid.classes[0]: size 528 leaves a gap after the last tiny class "
                   "256 (more than twice its size)")

    def test_mid_unsorted(self):
        self.check(edit(SMALL, "[384, 512, 1024, 2048]", "[384, 1024, 512, 2048]"),
                   "spec.yaml:18: mid.classes[2]: size 512 is not larger than the class before it (1024)")

    def test_mid_class_too_large(self):
        self.check(edit(SMALL, "[384, 512, 1024, 2048]", "[384, 512, 1024, 2048,\n"
                        "            524288, 1048576]"),
                   "spec.yaml:19: mid.classes[5]: size 1048576 does not fit a span "
                   "(at most a quarter superslab, 524288)")

    def test_too_many_classes(self):
        rows = "".join(f"    - {{ size: {16 * i} }}\n" for i in range(1, 251))
        text = SMALL.split("  classes:\n")[0] + "  classes:\n" + rows + "mid:" + SMALL.split("mid:")[1]
        text = edit(text, "[384, 512, 1024, 2048]", "[4016, 4032, 4048, 4064, 4080, 4096]")
        # 250 tiny classes + 6 mid: the 255th class is mid.classes[4], on line 8 + 250 + 5
        self.check(text, "spec.yaml:263: mid.classes[4]: 256 classes; at most 254 in all, tiny and mid")

    def test_too_many_tiny_classes(self):
        rows = "".join(f"    - {{ size: {16 * i} }}\n" for i in range(1, 256))
        text = SMALL.split("  classes:\n")[0] + "  classes:\n" + rows + "mid:" + SMALL.split("mid:")[1]
        text = edit(text, "[384, 512, 1024, 2048]", "[]")
        self.check(text, "spec.yaml:263: tiny.classes[254].size: 255 classes; at most 254 in all, "
                   "tiny and mid")

    # ---- overlays
    def test_overlay_base_missing(self):
        self.check("# an experiment\nbase: ../nope.yaml\n",
                   "v/x.yaml:2: base: base spec '../nope.yaml' does not exist", name="v/x.yaml")

    def test_overlay_base_is_a_directory(self):
        self.check("base: ..\n", "v/x.yaml:1: base: base spec '..' is not a file", name="v/x.yaml")

    def test_overlay_cycle(self):
        self.write("a.yaml", "base: b.yaml\n")
        self.check("# b\nbase: a.yaml\n", "a.yaml:1: base: overlays form a cycle: "
                   "b.yaml -> a.yaml -> b.yaml", name="b.yaml")
        # validating a instead: the cycle closes in b.yaml
        self.assertSpecError(self.hakgen("validate", "a.yaml"),
                             "b.yaml:2: base: overlays form a cycle: a.yaml -> b.yaml -> a.yaml")

    def test_overlay_on_itself(self):
        self.check("base: self.yaml\n", "self.yaml:1: base: overlays form a cycle: "
                   "self.yaml -> self.yaml", name="self.yaml")

    def test_overlay_removes_missing_class(self):
        self.write("small.yaml", SMALL)
        self.check("base: small.yaml\ntiny:\n  classes:\n    48: null\n",
                   "over.yaml:4: tiny.classes.48: the base has no class of size 48 to remove",
                   name="over.yaml")

    def test_overlay_patch_key_not_a_size(self):
        self.write("small.yaml", SMALL)
        self.check("base: small.yaml\ntiny:\n  classes:\n    big: {ring: 8}\n",
                   "over.yaml:4: tiny.classes.big: class patches are keyed by size in bytes",
                   name="over.yaml")

    def test_overlay_patch_with_size(self):
        self.write("small.yaml", SMALL)
        self.check("base: small.yaml\ntiny:\n  classes:\n    64: {size: 80}\n",
                   "over.yaml:4: tiny.classes.64.size: unknown key "
                   "(known: prewarm, refill, ring, sll, tiers, transfer)", name="over.yaml")

    def test_overlay_error_names_the_overlay(self):
        self.write("small.yaml", SMALL)
        self.check("base: small.yaml\n\ntiny:\n  classes:\n    64: {ring: 5000}\n",
                   "over.yaml:5: tiny.classes[2].ring: 5000 is out of range 1..4096", name="over.yaml")

    def test_overlay_error_in_base_names_the_base(self):
        self.write("small.yaml", edit(SMALL, "size: 32,", "size: 24,"))
        self.check("base: small.yaml\noptions: {metrics: true}\n",
                   "small.yaml:10: tiny.classes[1].size: size 24 is not a multiple of 16",
                   name="over.yaml")

    def test_overlay_does_not_hide_an_unsorted_base(self):
        self.write("small.yaml", edit(SMALL, "size: 32,", "size: 96,"))
        self.check("base: small.yaml\ntiny:\n  classes:\n    16: {ring: 8, refill: 8}\n",
                   "small.yaml:11: tiny.classes[2].size: size 64 is not larger than the class "
                   "before it (96)", name="over.yaml")

    def test_overlay_class_list_needs_size(self):
        self.write("small.yaml", SMALL)
        self.check("base: small.yaml\ntiny:\n  classes:\n    - {ring: 8}\n",
                   "over.yaml:4: tiny.classes[0].size: missing required field", name="over.yaml")

    def test_classes_mapping_outside_an_overlay(self):
        text = SMALL.split("  classes:\n")[0] + "  classes: {16: {ring: 8}}\nmid:" + SMALL.split("mid:")[1]
        self.check(text, "spec.yaml:8: tiny.classes: expected a list of classes")
