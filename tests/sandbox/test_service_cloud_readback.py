"""The Service Cloud read-back's Cases summary, against Cases, Tasks and SocialPosts put into
the Salesforce stand-in as syncd's Cases will leave them (read over its REST API)."""

from __future__ import annotations

from sandbox import service_cloud as sc
from sandbox.run import Sandbox


def test_cases_are_counted_by_origin_priority_posts_and_conversation() -> None:
    with Sandbox(networks=("x",)) as sandbox:
        sc.set_up(sandbox.salesforce, sandbox.seed(4))
        sf = sandbox.salesforce
        first = sf.insert("Case", {"Origin": "Web", "Priority": "High"})
        second = sf.insert("Case", {"Origin": "Web", "Priority": "High"})
        sf.insert("Case", {"Origin": "Phone", "Priority": "Low"})
        # Conversation a: two posts on the first Case, then one on the second; b: one on
        # none; the third Case (Phone) holds none.
        for key, conv, case in (
            ("x:1", "a", first),
            ("x:2", "a", first),
            ("x:3", "a", second),
            ("x:4", "b", None),
        ):
            sf.insert(
                "Task",
                {"Subject": key, "Social_Post_Id__c": key, "Social_Conversation_Id__c": conv}
                | ({"WhatId": case} if case else {}),
            )
            sf.insert(
                "SocialPost", {"Name": key, sc.KEY: key} | ({"ParentId": case} if case else {})
            )
        back = sc.case_readback(sandbox.soql, social_posts=True)
    assert back.cases == 3
    assert back.by_origin_priority == {("Web", "High"): 2, ("Phone", "Low"): 1}
    assert back.social_posts_per_case == back.tasks_per_case == {0: 1, 1: 1, 2: 1}
    assert back.cases_per_conversation == {0: 1, 2: 1}
    assert back.social_posts_without_case == back.tasks_without_case == 1
