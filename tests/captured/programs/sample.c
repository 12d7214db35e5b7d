#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Count the words on standard input, like a very small wc -w. */

#define BUFFER_SIZE 4096

struct counter {
    unsigned long words;
    unsigned long lines;
    int in_word;
};

static void feed(struct counter *c, const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char ch = buf[i];
        if (ch == '\n')
            c->lines++;
        if (ch == ' ' || ch == '\n' || ch == '\t') {
            c->in_word = 0;
        } else if (!c->in_word) {
            c->in_word = 1;
            c->words++;
        }
    }
}

int main(void)
{
    struct counter c = {0, 0, 0};
    char buf[BUFFER_SIZE];
    size_t n;

    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
        feed(&c, buf, n);
    printf("%lu words, %lu lines\n", c.words, c.lines);
    return EXIT_SUCCESS;
}
