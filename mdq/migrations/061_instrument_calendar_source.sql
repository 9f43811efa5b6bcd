-- 061: how each instrument's trading calendar was decided (issue 10 point 2):
-- 'mapping' (the source said so), 'instruments' (set by hand; NULL on rows written before this
-- migration or by hand), 'suffix' (the symbol's exchange suffix, VOD.L -> XLON), 'inferred'
-- (weekday pattern and label zone of the data), 'asset_class' (the asset class's default).
alter table instruments add column if not exists calendar_source text;
