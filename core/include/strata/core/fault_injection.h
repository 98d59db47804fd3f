#pragma once
// Fault injection for reliability tests: a process can be made to die (SIGKILL, no
// cleanup, as the OOM killer or a lost node would end it) at a named point of its work,
// so that a test can check what survives: the previous checkpoint, the other ranks' exit.
//
//   STRATA_FAULT=<point>:<n>[:<rank>[:error|:slow=<ms>]]   e.g. STRATA_FAULT=checkpoint-write:18:0
//
// kills the process the n-th time (counting from 1) it reaches fault_point(<point>),
// only on world rank <rank> (from OMPI_COMM_WORLD_RANK or STRATA_RANK; any rank if
// omitted or empty). With `:error` it raises strata::Error there instead ("injected fault
// at <point> #<n> on this rank"): a rank that fails while the others carry on. With
// `:slow=<ms>` it sleeps <ms> milliseconds there every time from the n-th on: a straggler,
// which the straggler report (strata/core/step_profile.h) must name. Without
// STRATA_FAULT, fault_point returns after one check.
//
// Points: "checkpoint-write" (after each tensor a checkpoint writer appends, before the
// checkpoint is committed), "pipeline-instruction" (before each instruction of a pipeline
// step), "train-step" (before each step of the example programs), "forward" (inside the
// recorded forward of a data-parallel replica and of a pipeline stage's micro-batch).

namespace strata::core {

void fault_point(const char* point);

// This process's world rank as its launcher (mpirun, strata-run) told it in the
// environment, before MPI or any communicator exists; -1 when it was not launched so.
int launcher_rank();

}  // namespace strata::core
