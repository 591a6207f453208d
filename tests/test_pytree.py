"""Nested primals taken apart into leaves and put back in the same structure."""
from __future__ import annotations

import collections

import numpy as np

from contractnet.pytree import flatten_tree, named_leaves, rebuilder


def test_flatten_and_rebuild_keep_the_containers_their_order_and_their_keys():
    tree = {"w": np.ones(2), "layers": [(1, 2), [3]], "b": 4}
    leaves, rebuild = flatten_tree(tree)
    assert len(leaves) == 5 and leaves[0] is tree["w"] and leaves[1:] == [1, 2, 3, 4]
    back = rebuild(["a", "b", "c", "d", "e"])
    assert back == {"w": "a", "layers": [("b", "c"), ["d"]], "b": "e"}
    assert type(back["layers"][0]) is tuple and type(back["layers"][1]) is list


def test_namedtuples_ordered_and_default_dicts_come_back_as_themselves():
    Pair = collections.namedtuple("Pair", "w b")
    leaves, rebuild = flatten_tree(Pair(1, [2, 3]))
    assert leaves == [1, 2, 3] and rebuild([4, 5, 6]) == Pair(4, [5, 6])
    ordered = collections.OrderedDict([("b", 1), ("a", 2)])
    back = flatten_tree(ordered)[1](["x", "y"])
    assert type(back) is collections.OrderedDict and list(back.items()) == [("b", "x"), ("a", "y")]
    default = collections.defaultdict(list, a=1)
    back = flatten_tree(default)[1](["z"])
    assert type(back) is collections.defaultdict and back.default_factory is list
    assert back == {"a": "z"} and default == {"a": 1}


def test_another_dict_subclass_comes_back_as_a_plain_dict():
    class Named(collections.OrderedDict):  # its constructor takes other arguments
        def __init__(self, name):
            super().__init__()
            self.name = name
    tree = Named("x")
    tree["a"] = 1
    back = flatten_tree(tree)[1](["y"])
    assert type(back) is dict and back == {"a": "y"}


def test_a_leaf_and_empty_containers_round_trip():
    leaves, rebuild = flatten_tree(7)
    assert leaves == [7] and rebuild(["x"]) == "x"
    leaves, rebuild = flatten_tree({"a": [], "b": ()})
    assert leaves == [] and rebuild([]) == {"a": [], "b": ()}


def test_rebuilder_hands_each_part_its_share_of_the_leaves():
    parts = [flatten_tree([1, 2]), flatten_tree(3)]
    assert rebuilder(parts, tuple)(["p", "q", "r"]) == (["p", "q"], "r")


def test_named_leaves_follow_flatten_trees_order_with_their_paths():
    tree = {"w": [1, {"z": 2}], "b": (3,)}
    assert named_leaves(tree, "primal 0") == [
        ("primal 0['w'][0]", 1), ("primal 0['w'][1]['z']", 2), ("primal 0['b'][0]", 3)]
    assert [leaf for _, leaf in named_leaves(tree, "x")] == flatten_tree(tree)[0]
