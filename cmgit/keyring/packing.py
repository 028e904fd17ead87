"""`cmgit gc`: pack a repository's history the way the keyring needs it, never with it.

git's own `git gc` repacks everything reachable from every ref into one pack, the
keyring's objects with the records'. Deleting a replaced wrapping (`ref.prune`) is then
no longer an unlink but a rewrite of the records' pack, or, in practice, never done: the
key of a reader removed from a case, or of an erased case, would stay in the repository.
So cmgit packs for itself: the loose objects that the branches (and the remote-tracking
branches of a clone) reach are written into a new pack of their own, then git deletes
the loose copies it now holds (`git prune-packed`). The keyring's loose objects stay loose
and its packs (`ref.keyring_packs`) stay as they are, each a group of shards. Prunes a
stopped command left are finished first, and the commit-graph is written afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..history import Git
from . import ref


@dataclass(frozen=True)
class Packed:
    """What `gc` did: the objects packed, the pack they went to (None: nothing loose to
    pack), and the keyring objects destroyed by the prunes it finished."""

    objects: int
    pack: str | None
    pruned: int


def gc(git: Git) -> Packed:
    """Pack the records' loose objects apart from the keyring (see the module's
    docstring). The caller holds the repository lock."""
    ref.keep_out_of_gc(git)
    pruned = ref.finish_prune(git)
    tips = git.text("for-each-ref", "--format=%(objectname)", "refs/heads/", "refs/remotes/")
    pack = None
    objects = 0
    if tips:
        before = git.pack_names()
        base = str(git.objects.folder / "pack" / "pack")
        revisions = "".join(f"{tip}\n" for tip in sorted(set(tips.split()))).encode("ascii")
        # --unpacked: only what no pack holds yet; --revs: only what the tips reach.
        git.run("pack-objects", "-q", "--revs", "--unpacked", base, input=revisions)
        made = sorted(git.pack_names() - before)
        if made:
            pack = made[0]
            objects = len(git.pack_ids(pack))
        git.run("prune-packed", "-q")
    git.refresh_commit_graph()
    return Packed(objects, pack, pruned)
