/* Progress of a training run on stderr: a live line on a terminal, plain lines otherwise. */
#ifndef KD_MNIST_PROGRESS_H
#define KD_MNIST_PROGRESS_H

typedef struct progress {
    const char *name;
    int epochs;
    int quiet, live;
    double start;
} progress;

/* Monotonic seconds. */
double now_seconds(void);

void progress_start(progress *p, const char *name, int epochs, int quiet);

/* Within epoch `epoch` (1-based), `fraction` of it done, with the running loss and accuracy. */
void progress_update(progress *p, int epoch, double fraction, double loss, double accuracy);

/* Ends the run's line(s); returns the elapsed seconds. */
double progress_finish(progress *p);

#endif /* KD_MNIST_PROGRESS_H */
