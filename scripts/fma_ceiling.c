/* The float32 fused-multiply-add ceiling of this machine's cores: FMAs on independent vector
   accumulators held in registers (no memory traffic), one thread per core, timed together.
   A float32 matrix product does one FMA per multiply-add, so no float32 product on these cores
   runs faster than this, whoever wrote its kernel (scripts/benchmark.py's "FMA ceiling").

     cc -O2 -march=native -ffp-contract=fast -pthread fma_ceiling.c -o fma_ceiling
     ./fma_ceiling THREADS SECONDS

   prints one JSON line: the best rate over the vector widths tried, and each width's own.
   Twelve accumulators: an FMA's latency (4 cycles on recent x86 cores) times two FMA ports
   needs eight in flight; twelve leave room and still fit AVX2's sixteen registers. They start
   from a volatile array, so that the compiler can neither fold them into one nor precompute
   the loop; the sum of all of them is printed, so none of the work is dead. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef float f32x16 __attribute__((vector_size(64)));
typedef float f32x8 __attribute__((vector_size(32)));

static volatile float seeds[12] = {1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f, 8.f, 9.f, 10.f, 11.f, 12.f};
/* acc = acc * scale + shift converges to shift / (1 - scale): no overflow, no subnormals. */
static volatile float scale = 0.999999f, shift = 1e-6f;

/* One function per width: 12 named accumulators, iterations x 12 vector FMAs. */
#define FMA_LOOP(NAME, VEC)                                                                    \
  static float NAME(long iterations) {                                                          \
    VEC a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, m, c;                                 \
    for (int l = 0; l < (int)(sizeof(VEC) / sizeof(float)); l++) {                             \
      a0[l] = seeds[0]; a1[l] = seeds[1]; a2[l] = seeds[2]; a3[l] = seeds[3];                   \
      a4[l] = seeds[4]; a5[l] = seeds[5]; a6[l] = seeds[6]; a7[l] = seeds[7];                   \
      a8[l] = seeds[8]; a9[l] = seeds[9]; a10[l] = seeds[10]; a11[l] = seeds[11];               \
      m[l] = scale; c[l] = shift;                                                               \
    }                                                                                           \
    for (long i = 0; i < iterations; i++) {                                                     \
      a0 = a0 * m + c; a1 = a1 * m + c; a2 = a2 * m + c; a3 = a3 * m + c;                       \
      a4 = a4 * m + c; a5 = a5 * m + c; a6 = a6 * m + c; a7 = a7 * m + c;                       \
      a8 = a8 * m + c; a9 = a9 * m + c; a10 = a10 * m + c; a11 = a11 * m + c;                   \
    }                                                                                           \
    VEC s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;                        \
    float total = 0.f;                                                                          \
    for (int l = 0; l < (int)(sizeof(VEC) / sizeof(float)); l++) total += s[l];                 \
    return total;                                                                               \
  }

FMA_LOOP(fma_loop_512, f32x16)
FMA_LOOP(fma_loop_256, f32x8)

typedef struct {
  int vector_bytes;
  long iterations;
  pthread_barrier_t *start;
  float total;
} Job;

static void *work(void *arg) {
  Job *job = arg;
  pthread_barrier_wait(job->start);
  job->total = job->vector_bytes == 64 ? fma_loop_512(job->iterations)
                                       : fma_loop_256(job->iterations);
  return NULL;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* Seconds for `threads` threads to each run `iterations`, from a common start to the last
   one's end; the sum of their results goes to *total. */
static double timed(int threads, int vector_bytes, long iterations, float *total) {
  pthread_t ids[threads];
  Job jobs[threads];
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, threads + 1);
  for (int t = 0; t < threads; t++) {
    jobs[t] = (Job){vector_bytes, iterations, &start, 0.f};
    pthread_create(&ids[t], NULL, work, &jobs[t]);
  }
  pthread_barrier_wait(&start);
  double begin = now();
  for (int t = 0; t < threads; t++) pthread_join(ids[t], NULL);
  double seconds = now() - begin;
  pthread_barrier_destroy(&start);
  *total = 0.f;
  for (int t = 0; t < threads; t++) *total += jobs[t].total;
  return seconds;
}

/* The fastest of repeated timings over `seconds`, in FLOP/s (2 per lane per FMA). */
static double best_rate(int threads, int vector_bytes, double seconds, float *total) {
  long iterations = 1 << 16;
  while (timed(threads, vector_bytes, iterations, total) < 0.05) iterations *= 2;
  double flops = 2.0 * 12 * (vector_bytes / sizeof(float)) * (double)iterations * threads;
  double best = 0, deadline = now() + seconds;
  do {
    double rate = flops / timed(threads, vector_bytes, iterations, total);
    if (rate > best) best = rate;
  } while (now() < deadline);
  return best;
}

int main(int argc, char **argv) {
  if (argc != 3 || atoi(argv[1]) < 1 || atof(argv[2]) <= 0) {
    fprintf(stderr, "usage: %s THREADS SECONDS\n", argv[0]);
    return 2;
  }
  int threads = atoi(argv[1]);
  double seconds = atof(argv[2]);
  float total512, total256;
  double rate512 = best_rate(threads, 64, seconds / 2, &total512);
  double rate256 = best_rate(threads, 32, seconds / 2, &total256);
  double best = rate512 > rate256 ? rate512 : rate256;
  printf("{\"gflops\": %.1f, \"vector_bytes\": %d, \"threads\": %d, "
         "\"gflops_by_vector_bytes\": {\"64\": %.1f, \"32\": %.1f}, \"checksum\": %.6g}\n",
         best / 1e9, rate512 >= rate256 ? 64 : 32, threads, rate512 / 1e9, rate256 / 1e9,
         (double)(total512 + total256));
  return 0;
}
