// Linked into every fluxcpp executable (CMake object library flux_preinit): sets OpenMP's wait policy to
// PASSIVE unless the user chose one, before libgomp reads its environment.
//
// Why: oneDNN and our kernel pool run on OpenMP. With libgomp's default policy each thread spins for
// milliseconds after every parallel region; on 2 cores shared with anything else (another process, the
// server's I/O thread, ctest -j2) the spinners starve the thread doing the work: a small generation ran
// 12x slower (67 s vs 5.6 s for the pipeline tests at load 5). A futex wake per region costs microseconds.
//
// How: DT_PREINIT_ARRAY functions of the executable run before any shared library's constructors, so this
// runs before libgomp's initialize_env().
#include <cstdlib>

namespace {

void set_omp_defaults(int, char**, char**) {
  setenv("OMP_WAIT_POLICY", "PASSIVE", /*overwrite=*/0);
  setenv("GOMP_SPINCOUNT", "0", 0);
}

}  // namespace

__attribute__((section(".preinit_array"), used)) void (*flux_preinit_omp_env)(int, char**, char**) = &set_omp_defaults;
