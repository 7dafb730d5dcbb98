"""Seed 001 (ASTuner "Trainable Workflow"), Simple Agent Scenario, on AgentScope 1.x: `ExampleMathLearn` as the
seed writes it: `model=model_tuner` (the tuner itself is the agent's model), `self.toolkit = Toolkit()` and
`self.agent = ReActAgent(...)` set inside `execute`, the seed's imports inside `execute`. The seed imports
from `agentscope_tuner`; here the same names come from `ajet` (`ModelTuner` is `AjetTuner`). The names the
seed leaves undefined come from `seed_support.py`; the config's judger scores `final_answer`."""

from agentscope.message import Msg
from seed_support import FinalResult, extract_final_answer, system_prompt

from ajet import ModelTuner, Workflow, WorkflowOutput, WorkflowTask


# fmt: off
class ExampleMathLearn(Workflow):
    name: str = "math_agent_workflow"

    async def execute(self, task: WorkflowTask, model_tuner: ModelTuner) -> WorkflowOutput:
        from agentscope.agent import ReActAgent
        from agentscope.formatter import DashScopeChatFormatter
        from agentscope.memory import InMemoryMemory
        from agentscope.tool import Toolkit, execute_python_code

        self.toolkit = Toolkit()
        self.toolkit.register_tool_function(execute_python_code)
        self.agent = ReActAgent(
            name="math_react_agent",
            sys_prompt=system_prompt,
            model=model_tuner,  # ← Key change!
            formatter=DashScopeChatFormatter(),
            toolkit=self.toolkit,
            memory=InMemoryMemory(),
        )

        query = task.task.main_query
        msg = Msg("user", query, role="user")
        result = await self.agent.reply(msg, structured_model=FinalResult)
        final_answer = extract_final_answer(result)
        return WorkflowOutput(reward=None, metadata={"final_answer": final_answer})
# fmt: on
