"""Subject hierarchy: results go into the study (parent item) of the inputs."""

from __future__ import annotations


def subject_hierarchy(scene):
    """The scene's subject hierarchy node (created by MRML on first request)."""
    import slicer

    return slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)


def parent_item_of(scene, node) -> int:
    """The subject-hierarchy parent (usually the study) of ``node``; the scene item if it has none."""
    shn = subject_hierarchy(scene)
    item = shn.GetItemByDataNode(node)
    if not item:
        return shn.GetSceneItemID()
    return shn.GetItemParent(item) or shn.GetSceneItemID()


def place_under(scene, node, parent_item: int) -> int:
    """Put ``node`` under ``parent_item`` (creating its own item when Slicer did not); returns its item."""
    shn = subject_hierarchy(scene)
    item = shn.GetItemByDataNode(node)
    if item:
        shn.SetItemParent(item, parent_item)
        return item
    return shn.CreateItem(parent_item, node)
