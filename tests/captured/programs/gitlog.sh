#!/bin/sh
# A small repository with branches and merges, then its coloured graph.
set -e
export GIT_AUTHOR_NAME=Ada GIT_AUTHOR_EMAIL=ada@example.org
export GIT_COMMITTER_NAME=Ada GIT_COMMITTER_EMAIL=ada@example.org
export GIT_AUTHOR_DATE='2024-01-01T12:00:00Z' GIT_COMMITTER_DATE='2024-01-01T12:00:00Z'
git init -q -b main repo
cd repo
commit() { echo "$1" >> file.txt; git add file.txt; git commit -q -m "$1"; }
commit 'initial commit'
commit 'add the parser'
git checkout -q -b feature
commit 'feature: first step'
commit 'feature: second step'
git checkout -q main
echo other > other.txt; git add other.txt; git commit -q -m 'main: unrelated change'
git merge -q --no-ff -m 'merge branch feature' feature
git checkout -q -b hotfix HEAD~1
echo fix > fix.txt; git add fix.txt; git commit -q -m 'hotfix: urgent'
git checkout -q main
git merge -q --no-ff -m 'merge branch hotfix' hotfix
git tag v1.0
commit 'after the release'
clear
git --no-pager log --graph --color --oneline --decorate --all
git --no-pager log --graph --color --format='%C(yellow)%h%C(reset) %C(bold blue)%an%C(reset) %s' -5
