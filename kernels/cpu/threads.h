#pragma once
// The OpenMP thread count sprig uses; 0 means OpenMP's default.
namespace sprig::cpu {
void set_num_threads(int n);
int num_threads();
int num_processors();  // the processors this process may run on
}  // namespace sprig::cpu
